"""What a person is shown of an exception raised in actor code: the error in one line (``KeyError:
'doc'``) and a traceback trimmed to their own frames.

Actor code runs under beach's dispatch, asyncio, worker threads and contextvars; a traceback that
lists those frames buries the one line that matters. The frames of beach's packages (``beach``,
``nodeagent``) and of the standard library's machinery under them are left out; the frames of
libraries the actor calls stay (the error may be inside one). When nothing would be left (beach's
own code raised), the whole traceback is kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import traceback

import beach

_PACKAGE = os.path.dirname(os.path.abspath(beach.__file__))
_MACHINERY = tuple(os.path.join(p, "") for p in (
    _PACKAGE, os.path.join(os.path.dirname(_PACKAGE), "nodeagent"),
    os.path.dirname(os.path.abspath(asyncio.__file__)),
    os.path.dirname(os.path.abspath(concurrent.futures.__file__)),
)) + (os.path.abspath(threading.__file__),)
MAX_MESSAGE = 500  # characters of the exception's message kept in the one-line error


def _theirs(frame: traceback.FrameSummary) -> bool:
    return not os.path.abspath(frame.filename).startswith(_MACHINERY)


def _trim(exc: traceback.TracebackException) -> None:
    mine = [frame for frame in exc.stack if _theirs(frame)]
    if mine:
        exc.stack = traceback.StackSummary.from_list(mine)
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            _trim(linked)


def user_traceback(err: BaseException) -> str:
    """``err``'s traceback as Python prints it, with only the frames of the actor's code (and the
    libraries it called): beach's and asyncio's frames left out."""
    exc = traceback.TracebackException.from_exception(err)
    _trim(exc)
    return "".join(exc.format())


def describe(err: BaseException) -> str:
    """``err`` in one line, as Python ends a traceback: ``KeyError: 'doc'``, ``mymodule.Refused: no``."""
    kind = type(err)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    message = " ".join(str(err).split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return f"{name}: {message}" if message else name
