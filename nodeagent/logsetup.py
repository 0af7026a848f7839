"""Where a node's processes log: stderr always, and the original's ``--log-dest`` too.

py-beach logged to syslog at ``--log-dest`` (default ``/dev/log``). Here stderr is the default (a
service manager keeps it) and every actor's lines also go to the cluster's log stream; ``--log-dest
PATH`` adds the original's destination: a syslog socket when PATH is one, else a file appended to.
The node agent passes its level and destination on to its actor hosts.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys

from beach.errors import ConfigError

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def level(text: str) -> str:
    """A log level given as a name (``DEBUG``) or as the original's number (``10``), as a name;
    raise `ConfigError` naming it when it is neither."""
    name = text.strip().upper()
    if name in LEVELS:
        return name
    by_number = {str(number): known for known, number in LEVELS.items()}
    if name in by_number:
        return by_number[name]
    raise ConfigError(f"--log-level {text!r}: give a level name ({', '.join(LEVELS)}) or number (10 to 50)")


def destination(path: str, label: str) -> logging.Handler:
    """The handler for ``--log-dest PATH``: syslog when PATH is a socket (``/dev/log``), else a file
    appended to. Raises `ConfigError` when it cannot be used."""
    try:
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            handler: logging.Handler = logging.handlers.SysLogHandler(address=path)
            handler.setFormatter(logging.Formatter(f"beach {label} %(name)s: %(message)s"))
            return handler
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"--log-dest {path}: {err.strerror or err}") from None
    handler.setFormatter(logging.Formatter(f"%(asctime)s {label} %(name)s %(levelname)s %(message)s"))
    return handler


def configure(log_level: str | int, label: str, log_dest: str | None = None) -> None:
    """Log at ``log_level`` to stderr (lines marked ``label``) and, with ``log_dest``, there too.
    Raises `ConfigError` for a destination that cannot be used."""
    extra = destination(log_dest, label) if log_dest else None
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format=f"%(asctime)s {label} %(name)s %(levelname)s %(message)s")
    if extra is not None:
        logging.getLogger().addHandler(extra)
