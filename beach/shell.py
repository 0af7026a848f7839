"""The original's ``beach_cli``: an interactive shell on a cluster, and a one-shot request mode.

    python -m beach.beach_cli CONFIG [--realm REALM]
        The shell (``help`` lists its commands; ``help COMMAND`` shows a command's options).
    python -m beach.beach_cli CONFIG -rm REALM -rcat CATEGORY -rcmd TYPE [-rd DATA] [-ri IDENT] [-b] [-rt S]
        Send one request, print the reply's data as JSON and exit 0, or the failure on stderr and exit 1.

Data typed by a person (``-p``, ``-r``, ``-d``, ``-rd``) is JSON or a Python literal, never evaluated.
Bad input gets one line naming what was wrong; the shell goes on.
"""

from __future__ import annotations

import argparse
import cmd
import functools
import inspect
import os
import shlex
import sys
from collections.abc import Callable
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, NamedTuple, NoReturn

from beach.client.blocking import Beach
from beach.client.handle import DEFAULT_TIMEOUT
from beach.client.response import ActorResponse
from beach.errors import BeachError, UsageError
from beach.output import add_spawn_options, describe_failure, dumps, one_line, parse_data, spawn_options
from beach.security.keys import generate_key
from beach.wire import subjects

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

readline: ModuleType | None
try:
    import readline
except ImportError:  # Windows, or a Python built without it: no history, no completion
    readline = None

INTRO = "Welcome to Beach shell. Type help or ? to list commands."
HISTORY_ENV = "BEACH_HISTORY"
DEFAULT_HISTORY = "~/.beach_history"
HISTORY_LENGTH = 1000
# requestFromAll's replies each time out after the timeout: a little more lets the last ones arrive
BROADCAST_MARGIN = 2.0
EXIT_INTERRUPTED = 130

Options = Callable[[argparse.ArgumentParser], None]
Command = Callable[["BeachShell", argparse.Namespace], "bool | None"]
Handler = Callable[["BeachShell", str], "bool | None"]


class NoActorsError(UsageError):
    """A request to a category that has no live actor (the directory says so before anything is sent)."""


class Replies(NamedTuple):
    """What a request brought back: the data to print, and one line per failure (empty: success)."""

    data: Any
    failures: list[str]


def send_request(beach: Beach, category: str, request_type: str, data: Any = None, ident: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, from_all: bool = False) -> Replies:
    """Send one request to ``category`` of the current realm, or with ``from_all`` to each of its actors.

    One reply gives its data; ``from_all`` gives the list of every reply's data, waiting at most about
    ``timeout`` seconds. Raises `NoActorsError` when the category has no actor, and what
    `ActorHandle.request` raises for data that cannot be sent.
    """
    handle = beach.getActorHandle(category, ident=ident, timeout=timeout)
    try:
        expected = handle.getNumAvailable()
        if expected == 0:
            raise NoActorsError(f"no actors available in category {category!r} of realm {beach.realm!r}")
        if not from_all:
            response = handle.request(request_type, data, timeout=timeout)
            return Replies(response.data, [] if response.isSuccess else [describe_failure(response)])
        future = handle.requestFromAll(request_type, data, timeout)
        replies = future.waitAll(timeout + BROADCAST_MARGIN)
        failures = [describe_failure(r) for r in replies if not r.isSuccess]
        if not future.isFinished():
            failures.append(f"timeout after {timeout:g} seconds: {len(replies)} of {expected} actors answered")
        return Replies([r.data for r in replies], failures)
    finally:
        handle.close()


class _HelpShown(Exception):
    """A command's ``-h`` printed its help: there is nothing more to do."""


class ShellArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` for one shell command: help goes to the shell's output, and an error
    raises `UsageError` (one line) instead of exiting the shell."""

    def __init__(self, *args: Any, out: IO[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = out

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        """Print the help to the shell's output."""
        super().print_help(file or self.out)

    def print_usage(self, file: SupportsWrite[str] | None = None) -> None:
        """Print the usage line to the shell's output."""
        super().print_usage(file or self.out)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Leave the command, not the shell: raises `UsageError` with ``message``, or after ``-h`` an
        internal exception that the shell ignores."""
        if message:
            raise UsageError(one_line(message))
        raise _HelpShown

    def error(self, message: str) -> NoReturn:
        """Raise `UsageError` naming the command and what was wrong with its arguments."""
        raise UsageError(f"{self.prog}: {one_line(message)} (see help {self.prog})")


def command(options: Options | None = None) -> Callable[[Command], Handler]:
    """Make ``do_NAME(self, args)`` a shell command whose line is parsed first by an argparse parser that
    ``options`` fills in; its docstring is the command's help. ``-h`` prints the help and runs nothing."""

    def decorate(fn: Command) -> Handler:
        @functools.wraps(fn)
        def do(self: BeachShell, line: str) -> bool | None:
            args = self.parse(fn.__name__.removeprefix("do_"), line)
            return None if args is None else fn(self, args)

        do.options = options  # type: ignore[attr-defined]
        return do

    return decorate


# ---------------------------------------------------------------- each command's options

def _path_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the file to write (it must not exist)")


def _realm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("realm", nargs="?", help="the realm to use (omitted: print the current one)")


def _get_dir_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--category", help="show only this category (its exact name)")


def _flush_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--confirm", action="store_true", help="really stop every actor of every realm")


def _add_actor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--name", required=True, help="the actor class (<code_directory>/<realm>/<NAME>.py)")
    p.add_argument("-c", "--category", required=True, nargs="+", metavar="CAT", help="its categories")
    p.add_argument("--realm", help="start it in this realm (default: the current one)")
    add_spawn_options(p)


def _stop_actor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--id", nargs="+", default=[], metavar="ID", help="actor uids (or unique prefixes of them)")
    p.add_argument("-c", "--category", nargs="+", default=[], metavar="CAT", help="every actor under these categories")
    p.add_argument("-d", "--delay", type=float, metavar="S", help="stop them one at a time, S seconds apart")


def _recategorize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--id", required=True, help="the actor's uid (or a unique prefix of it)")
    p.add_argument("-c", "--category", required=True, help="the category")


def _request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("category", help="the category (in the current realm)")
    p.add_argument("type", help="the request type")
    p.add_argument("-d", "--data", metavar="DATA", help="the request data (JSON or a Python literal; default {})")
    p.add_argument("-i", "--ident", help="the ident to send")
    p.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds to wait (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--from-all", action="store_true", help="ask every actor of the category; print a list")


class BeachShell(cmd.Cmd):
    """The interactive shell on ``beach``: one command per cluster operation, JSON output, one-line
    errors. ``run()`` is the loop (history, Ctrl-C); the shell leaves closing ``beach`` to its owner."""

    intro = INTRO

    def __init__(self, beach: Beach, out: IO[str] | None = None) -> None:
        super().__init__(stdout=out or sys.stdout)
        self.beach = beach
        self._interrupts = 0
        self._set_prompt()

    # ---------------------------------------------------------------- the loop

    def run(self, history: str | None = None) -> None:
        """Read commands until ``exit``, ``quit``, Ctrl-D or two Ctrl-C in a row; with readline, load the
        history file ``history`` first and save it at the end."""
        self._load_history(history)
        try:
            intro: str | None = None
            while True:
                try:
                    self.cmdloop(intro)
                    return
                except KeyboardInterrupt:
                    self.stdout.write("\n")
                    self._interrupts += 1
                    if self._interrupts >= 2:
                        return
                    intro = ""  # the intro once per session
        finally:
            self._save_history(history)

    def _load_history(self, path: str | None) -> None:
        if readline is None or path is None:
            return
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            self._error(f"history not read from {path}: {err.strerror or err}")

    def _save_history(self, path: str | None) -> None:
        if readline is None or path is None:
            return
        try:
            readline.write_history_file(path)
        except OSError as err:
            self._error(f"history not saved to {path}: {err.strerror or err}")

    def preloop(self) -> None:
        """Let tab completion see a category (``a/b``) as one word."""
        if readline is not None:
            readline.set_completer_delims(readline.get_completer_delims().replace("/", "").replace("-", ""))

    def precmd(self, line: str) -> str:
        """A command typed ends a run of Ctrl-C."""
        self._interrupts = 0
        return line

    def onecmd(self, line: str) -> bool:
        """Run one command line; any error becomes one line ``error: ...`` and the shell goes on."""
        try:
            return bool(super().onecmd(line))
        except BeachError as err:
            self._error(str(err) or type(err).__name__)
        except Exception as err:  # a bug or an unexpected failure must not end the session
            self._error(f"{type(err).__name__}: {err}")
        return False

    def emptyline(self) -> bool:
        """An empty line does nothing (cmd.Cmd would repeat the last command)."""
        return False

    def default(self, line: str) -> None:
        """An unknown command: say so (and go on: `onecmd` takes None as False)."""
        self._error(f"unknown command {self.parseline(line)[0] or line!r}: type help")

    def get_names(self) -> list[str]:
        """The attribute names cmd.Cmd lists and completes, without ``do_EOF`` (Ctrl-D is no command)."""
        return [name for name in super().get_names() if name != "do_EOF"]

    def do_help(self, arg: str) -> bool | None:
        """List the commands, or show one command's usage and options: help COMMAND."""
        name = arg.strip()
        if not name:
            return super().do_help(arg)
        method = getattr(self, "do_" + name, None)
        if method is None or name == "EOF":
            self._error(f"unknown command {name!r}: type help")
        elif getattr(method, "options", False) is False:  # not one of ours (help itself)
            super().do_help(name)
        else:
            self.stdout.write(self.parser(name).format_help())
        return None

    # ---------------------------------------------------------------- helpers

    def parser(self, name: str) -> ShellArgumentParser:
        """The argparse parser of command ``name``: its ``do_`` method's docstring and options."""
        method = getattr(self, "do_" + name)
        parser = ShellArgumentParser(prog=name, description=inspect.getdoc(method), out=self.stdout,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        if method.options is not None:
            method.options(parser)
        return parser

    def parse(self, name: str, line: str) -> argparse.Namespace | None:
        """Parse ``line`` for command ``name``; None after ``-h``. Raises `UsageError` for bad arguments."""
        try:
            words = shlex.split(line)
        except ValueError as err:  # an unclosed quote
            raise UsageError(f"{name}: {err}") from None
        try:
            return self.parser(name).parse_args(words)
        except _HelpShown:
            return None

    def _print(self, value: Any) -> None:
        self.stdout.write(dumps(value) + "\n")

    def _error(self, message: str) -> None:
        self.stdout.write(f"error: {one_line(message)}\n")

    def _show(self, response: ActorResponse, what: str) -> None:
        if response.isSuccess:
            self._print(response.data)
        else:
            self._error(f"{what}: {describe_failure(response)}")

    def _set_prompt(self) -> None:
        self.prompt = f"(beach/{self.beach.realm}) "

    def _directory(self) -> dict[str, dict[str, str]]:
        # getDirectory lists only the realms that have live actors
        directory: dict[str, dict[str, str]] = self.beach.getDirectory()["realms"].get(self.beach.realm, {})
        return directory

    def _categories(self) -> list[str]:
        hidden = subjects.ACTORS_CATEGORY + "/"
        return sorted(c for c in self._directory() if not c.startswith(hidden))

    # ---------------------------------------------------------------- completion

    def complete_categories(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Complete a category of the current realm: the first argument of ``request``, or what follows
        ``-c``/``--category`` in the other commands."""
        words = line[:begidx].split()
        options = [w for w in words[1:] if w.startswith("-")]
        first_argument = words[:1] == ["request"] and len(words) == 1
        if first_argument or (options and options[-1] in ("-c", "--category")):
            return [c for c in self._categories() if c.startswith(text)]
        return []

    complete_request = complete_get_dir = complete_stop_actor = complete_categories
    complete_add_actor = complete_add_to_category = complete_remove_from_category = complete_categories

    def complete_realm(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Complete a realm that has live actors."""
        return [r for r in sorted(self.beach.getDirectory()["realms"]) if r.startswith(text)]

    # ---------------------------------------------------------------- commands

    @command(_path_options)
    def do_gen_key(self, args: argparse.Namespace) -> None:
        """Write a new shared key (32 random bytes, what the config's private_key names) to PATH.
        An existing file is an error: a key is never overwritten."""
        path = generate_key(args.path)
        self.stdout.write(f"key written to {path}\n")

    @command(_realm_options)
    def do_realm(self, args: argparse.Namespace) -> None:
        """Use REALM for the later commands (the prompt shows it); with no REALM, print the current one."""
        if args.realm is None:
            self.stdout.write(self.beach.realm + "\n")
            return
        self.beach.setRealm(args.realm)
        self._set_prompt()

    @command(_get_dir_options)
    def do_get_dir(self, args: argparse.Namespace) -> None:
        """Print the directory of the current realm: {category: {uid: 'node/host'}}, or one category's part."""
        directory = self._directory()
        if args.category is None:
            self._print(directory)
            return
        category = subjects.normalize(args.category)
        if category not in directory:
            raise UsageError(f"no category {category!r} in realm {self.beach.realm!r}")
        self._print(directory[category])

    @command(_flush_options)
    def do_flush(self, args: argparse.Namespace) -> None:
        """Stop every actor in ALL realms (not only the current one), on every node, and forget every
        supervised actor and patrol spec. Needs --confirm."""
        if not args.confirm:
            self.stdout.write("Please confirm ( see command help )\n")
            return
        if not self.beach.flush():
            raise UsageError("flush: not every node stopped its actors (see get_mtd)")
        self._print(True)

    @command(_add_actor_options)
    def do_add_actor(self, args: argparse.Namespace) -> None:
        """Start an actor and print where it runs ({'uid', 'node', 'host'})."""
        response = self.beach.addActor(args.name, args.category, realm=args.realm, **spawn_options(args))
        self._show(response, "add_actor")

    @command(_stop_actor_options)
    def do_stop_actor(self, args: argparse.Namespace) -> None:
        """Stop actors by uid and/or by category (current realm); print {'stopped': [...], 'not_found': [...]}."""
        if not args.id and not args.category:
            raise UsageError("stop_actor: name the actors with -i ID or -c CATEGORY (see help stop_actor)")
        uids = [self.beach.resolveUid(uid) for uid in args.id]
        self._show(self.beach.stopActors(withId=uids, withCategory=args.category or None, delay=args.delay),
                   "stop_actor")

    @command()
    def do_get_cluster_health(self, args: argparse.Namespace) -> None:
        """Print each node's health: cpu per core, memory, actors."""
        self._print(self.beach.getClusterHealth())

    @command()
    def do_get_load_info(self, args: argparse.Namespace) -> None:
        """Print each actor's load: requests in flight, its bound, its handlers."""
        self._print(self.beach.getLoadInfo())

    @command()
    def do_get_mtd(self, args: argparse.Namespace) -> None:
        """Print every node's actors with their metadata (private parameters hidden)."""
        self._print(self.beach.getAllNodeMetadata())

    @command(_recategorize_options)
    def do_add_to_category(self, args: argparse.Namespace) -> None:
        """Add a category to a running actor: it serves that category's requests at once."""
        if not self.beach.addToCategory(self.beach.resolveUid(args.id), args.category):
            raise UsageError(f"add_to_category: actor {args.id!r} is not running (or its node refused)")
        self._print(True)

    @command(_recategorize_options)
    def do_remove_from_category(self, args: argparse.Namespace) -> None:
        """Remove a category from a running actor."""
        if not self.beach.removeFromCategory(self.beach.resolveUid(args.id), args.category):
            raise UsageError(f"remove_from_category: actor {args.id!r} is not running or not in {args.category!r}")
        self._print(True)

    @command(_request_options)
    def do_request(self, args: argparse.Namespace) -> None:
        """Send a request to an actor of CATEGORY and print the reply's data (with --from-all, to each of its
        actors, printing the list of their replies' data)."""
        replies = send_request(self.beach, args.category, args.type, parse_data(args.data, "--data"),
                               ident=args.ident, timeout=args.timeout, from_all=args.from_all)
        if args.from_all or not replies.failures:
            self._print(replies.data)
        for failure in replies.failures:
            self._error(f"request: {failure}")

    @command()
    def do_exit(self, args: argparse.Namespace) -> bool:
        """Leave the shell (the connection to the cluster is closed)."""
        return True

    @command()
    def do_quit(self, args: argparse.Namespace) -> bool:
        """Leave the shell (the same as exit)."""
        return True

    @command()
    def do_EOF(self, args: argparse.Namespace) -> bool:
        """Ctrl-D: leave the shell."""
        self.stdout.write("\n")
        return True


# ---------------------------------------------------------------- the tool

# the one-shot flags that must come together, and those that only make sense with them
ONE_SHOT_REQUIRED = {"req_realm": "-rm/--req-realm", "req_cat": "-rcat/--req-cat", "req_cmd": "-rcmd/--req-cmd"}
ONE_SHOT_OPTIONAL = ("req_ident", "req_data", "req_timeout", "is_broadcast")


def _arguments(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The beach shell, or with -rm/-rcat/-rcmd one request.")
    parser.add_argument("config", help="the beach config file, or a NATS URL (nats://HOST:4222)")
    parser.add_argument("--realm", default=None, help="the shell's realm (default: the config's realm, else global)")
    once = parser.add_argument_group("one-shot request (instead of the shell; -rm, -rcat and -rcmd together)")
    once.add_argument("-rm", "--req-realm", metavar="REALM", help="the realm")
    once.add_argument("-rcat", "--req-cat", metavar="CATEGORY", help="the category")
    once.add_argument("-rcmd", "--req-cmd", metavar="TYPE", help="the request type")
    once.add_argument("-rd", "--req-data", metavar="DATA", help="the data (JSON or a Python literal; default {})")
    once.add_argument("-ri", "--req-ident", metavar="IDENT", help="the ident to send")
    once.add_argument("-b", "--is-broadcast", action="store_true", default=None,  # None: not given
                      help="ask every actor of the category; print the list of their replies' data")
    once.add_argument("-rt", "--req-timeout", type=float, metavar="S",
                      help=f"seconds to wait (default {DEFAULT_TIMEOUT:g}, also for -b)")
    return parser


def _one_shot(beach: Beach, args: argparse.Namespace, data: Any) -> int:
    try:
        replies = send_request(beach, args.req_cat, args.req_cmd, data, ident=args.req_ident,
                               timeout=args.req_timeout or DEFAULT_TIMEOUT, from_all=bool(args.is_broadcast))
    except NoActorsError as err:
        print(f"beach: {one_line(str(err))}", file=sys.stderr)
        return 1
    if args.is_broadcast or not replies.failures:  # a broadcast shows what came back, even with failures
        print(dumps(replies.data))
    for failure in replies.failures:
        print(f"beach: {failure}", file=sys.stderr)
    return 1 if replies.failures else 0


def main(argv: list[str] | None = None, prog: str = "python -m beach.beach_cli") -> int:
    """Run the shell, or with ``-rm``/``-rcat``/``-rcmd`` one request; return the exit status.

    0: done; 1: the request failed or found no actor; 2: bad arguments, config or cluster (one line on
    stderr); 130: interrupted in one-shot mode. Argument errors exit through argparse (``SystemExit(2)``).
    """
    parser = _arguments(prog)
    args = parser.parse_args(argv)
    one_shot = any(getattr(args, dest) is not None for dest in (*ONE_SHOT_REQUIRED, *ONE_SHOT_OPTIONAL))
    missing = [flag for dest, flag in ONE_SHOT_REQUIRED.items() if getattr(args, dest) is None]
    if one_shot and missing:
        parser.error(f"one-shot mode needs {', '.join(missing)} too (-rm, -rcat and -rcmd go together)")
    if args.req_timeout is not None and args.req_timeout <= 0:
        parser.error(f"-rt/--req-timeout must be above 0, not {args.req_timeout:g}")
    try:
        data = parse_data(args.req_data, "-rd/--req-data") if one_shot else None
        with Beach(args.config, realm=args.req_realm if one_shot else args.realm) as beach:
            notice = beach._core.session.open_notice()
            if notice:
                print(f"beach: {notice}", file=sys.stderr)
            if one_shot:
                return _one_shot(beach, args, data)
            history = os.path.expanduser(os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY)
            BeachShell(beach).run(history)
            return 0
    except BeachError as err:
        print(f"beach: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not one_shot:
            print(file=sys.stderr)
        return EXIT_INTERRUPTED
