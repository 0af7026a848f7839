"""Mutation testing of beach's pure core against the unit layer (tests/unit/) alone, module by module:

    .venv/bin/pip install -e '.[test,mutation]'
    nice -n 19 .venv/bin/python -m tests.mutation                      # the settled modules, one at a time
    nice -n 19 .venv/bin/python -m tests.mutation beach/backoff.py     # the modules named
    .venv/bin/python -m tests.mutation --report                        # the table of the last runs

mutmut (its configuration is ``[tool.mutmut]`` in pyproject.toml) makes the mutants of each module
and runs, for each, the unit tests that reach the mutated function, in processes forked from one
that has already run the suite. Code that runs once per process (a packer made on first use, a
value cached at import) is then exercised in the parent only, so its mutants seem to survive:
every mutant mutmut reports as surviving (or reached by no test) is run again here in a fresh
process (``python -m pytest`` with ``MUTANT_UNDER_TEST`` set, on the module's own unit tests and
every other that mutmut saw reach the function), and counts as killed if a test fails there.

A mutant that still survives is either equivalent (no test can tell it from the original: it is
listed in `EQUIVALENT` with the reason, matched by its mutated line) or a gap in the tests: each is
printed with its diff. The score is killed or timed out over all generated mutants; the exit status
is 1 when a module scores under ``--min`` (90 %) or a survivor is not known to be equivalent.
Results are kept in ``mutants/`` (mutmut's own, and ``mutants/fresh.json``) so ``--report`` prints
the table of every module run so far; the table is what docs/testing.md records, with its date
and commit.
"""

from __future__ import annotations

import argparse
import codecs
import datetime
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
FRESH = MUTANTS / "fresh.json"

# The modules whose scores are held at 90 % (the rest of [tool.mutmut] only_mutate is measured when
# named: their tests are in tests/unit/, their scores are chased once the modules settle)
SETTLED = [
    "beach/wire/subjects.py",
    "beach/wire/messages.py",
    "beach/security/seal.py",
    "beach/backoff.py",
    "beach/code/bundle.py",
    "beach/client/routing.py",
    "beach/state/records.py",
    "beach/state/placement.py",
    "beach/config.py",
    "beach/state/patrol.py",
    "beach/tracing.py",
    "beach/state/actorstate.py",
    "beach/wire/chunks.py",
    "beach/bus/bodies.py",
]

# Modules measured in part: the pure functions of a module that is otherwise about the bus or a
# process (their other functions are tested against a real cluster, outside the unit layer)
PARTS: dict[str, list[str]] = {
    "beach/tracing.py": ["_parse", "trace_id", "exporter_names", "_asked", "raised", "_context_of", "_remote",
                         "_attributes", "_carry", "headers", "from_headers", "_rpc_attributes"],
    "beach/state/actorstate.py": ["Turn.__init__", "Turn.check_open", "Turn.claim", "Turn.finished", "Turn.finish",
                                  "Scope.__init__", "Scope.__repr__", "Scope.held", "Scope.hold",
                                  "Pending.__init__", "Pending.outcome", "Committer._take"],
    "beach/bus/bodies.py": ["chunk_subject", "ttl_for", "check_limit"],
}

# Survivors no test can kill, by module: (the function, the mutated line as mutmut writes it, stripped; why). Besides
# these, a mutant that only changes the case of a codec's name ("utf-8" → "UTF-8") is equivalent
# everywhere (`same_codec`).
EQUIVALENT: dict[str, list[tuple[str, str, str]]] = {
    "beach/wire/subjects.py": [
        ("prefix_categories", "for n in range(1, len(parts) + 2):",
         "the extra prefix parts[:len + 1] is the whole category again, already in the dict"),
        ("prefix_categories", 'seen["/".join(parts[:n])] = ""',
         "the dict is an ordered set: its values are never read"),
        ("check_length", 'size = len(subject) if (subject.isascii()) and False else len(subject.encode("utf-8"))',
         "an ASCII text's length is its UTF-8 length: the test only skips encoding it"),
        ("check_line", "if (len(subject) + len(reply)) * 5 + _LINE_FIXED <= MAX_CONTROL_LINE:",
         "the shortcut only skips counting bytes for lines that fit at 4 bytes a character: a stricter shortcut "
         "counts them, with the same verdict"),
        ("check_line", "if (len(subject) + len(reply)) * 4 + _LINE_FIXED < MAX_CONTROL_LINE:",
         "the shortcut only skips counting bytes for lines that fit at 4 bytes a character: a stricter shortcut "
         "counts them, with the same verdict"),
        ("key_uid", 'return unescape(key.rsplit(".", )[-1])',
         "the last part of a split is the same however many splits are made"),
        ("key_uid", 'return unescape(key.rsplit(".", 2)[-1])',
         "the last part of a split is the same however many splits are made"),
        ("key_uid", 'return unescape(key.rsplit(".", 1)[+1])',
         "every actor or member key has a realm token before its uid: one split makes two parts, [1] is [-1]"),
    ],
    "beach/wire/chunks.py": [
        ("nonce", "return index.to_bytes(NONCE_BYTES, )",
         "byte order 'big' is int.to_bytes's default since Python 3.11 (said for the reader)"),
    ],
    "beach/security/seal.py": [
        ("Sealer.__init__", "self._aeads = {kid: AESGCM(k) for kid, k in zip(self._ids, keys, strict=None)}",
         "the ids are made from the keys, one each: the two always have the same length"),
        ("Sealer.__init__", "self._aeads = {kid: AESGCM(k) for kid, k in zip(self._ids, keys, )}",
         "the ids are made from the keys, one each: the two always have the same length"),
        ("Sealer.__init__", "self._aeads = {kid: AESGCM(k) for kid, k in zip(self._ids, keys, strict=False)}",
         "the ids are made from the keys, one each: the two always have the same length"),
        ("Sealer.__init__", 'self._nonces = itertools.count(int.from_bytes(os.urandom(NONCE_BYTES), ))',
         "byte order 'big' is int.from_bytes's default since Python 3.11 (said for the reader)"),
        ("Sealer.seal", 'header = self._prefix + int(time.time() * 1000).to_bytes(8, )',
         "byte order 'big' is int.to_bytes's default since Python 3.11 (said for the reader)"),
        ("Sealer.seal", 'nonce = (next(self._nonces) & _NONCE_MASK).to_bytes(NONCE_BYTES, )',
         "byte order 'big' is int.to_bytes's default since Python 3.11 (said for the reader)"),
        ("Sealer.open", 'age = time.time() - int.from_bytes(header[7:], ) / 1000',
         "byte order 'big' is int.from_bytes's default since Python 3.11 (said for the reader)"),
        ("Sealer._remember", "if now - self._turned >= self.window + SKEW:",
         "the nonce memory turns at one span or a hair after it: either way every nonce is kept at least a span "
         "(the guarantee, tested) and forgotten after two"),
        ("stored_body", 'return sealer.open(f"{subject} ", body, fresh=None)',
         "fresh is a flag: None is false, as False is"),
        ("read_key", "key = f.read(None)",
         "reading the whole file instead of 33 bytes gives the same verdict (the size is what is judged), "
         "only later for a huge file"),
        ("read_key", "key = f.read(34)", "any read of more than 32 bytes tells a key from a longer file alike"),
    ],
    "beach/client/routing.py": [
        ("_digest", 'return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), )',
         "byte order 'big' is int.from_bytes's default since Python 3.11 (said for the reader)"),
        ("Targets.__init__", "self._generation = None",
         "any value no view generation takes makes the first call read the view (generations count up from 0)"),
        ("Targets.__init__", "self._generation = -2",
         "any value no view generation takes makes the first call read the view (generations count up from 0)"),
        ("Targets.__init__", "self._members: list[ActorEntry] = None",
         "never read before the first call to members() replaces it (the generation differs then)"),
        ("Targets.__init__", 'self._ring: Ring | None = ""',
         "never read before the first call to members() replaces it (the generation differs then)"),
        ("Targets.__init__", "self._actor_subjects: dict[str, str] = None",
         "never read before the first call to members() replaces it (the generation differs then)"),
        ("Targets.route", "subject = None", "the per-actor subject cache only saves building the same string again"),
        ("Targets.route", "subject = self._actor_subjects.get(None)",
         "the per-actor subject cache only saves building the same string again"),
    ],
    "beach/config.py": [
        ("load", "return parse(None, None)", "parse reads None (an empty YAML document) as {}"),
        ("load", "return parse(None)", "parse reads None (an empty YAML document) as {}; its path defaults to None"),
        ("load", "return parse({}, )", "parse's path defaults to None"),
        ("_read_auth_file", 'path = section.auth_file or "XXXX"',
         "both callers name the auth file before they call it: the fallback is for the type checker"),
        ("parse", 'config.nats.store_dir = _relative(base, config.nats.store_dir) or "XXXX"',
         "_relative of a path (not None) is never None: the fallback is for the type checker"),
    ],
    "beach/tracing.py": [
        ("_remote",
         "state = api.trace.TraceState.from_header([trace.tracestate]) if (trace.tracestate) or True else None",
         "an empty tracestate header parses to the empty TraceState, which is what a span context given None holds"),
        ("_asked", 'if environ.get("OTEL_SDK_DISABLED", "XXXX").strip().lower() == "true":',
         "any default but 'true' reads as not disabled"),
    ],
    "beach/state/placement.py": [
        ("Placer.candidates", 'ids = [self.choose("random", None, nodes, None, [], unavailable)]',
         "the random strategy reads neither the actors nor the categories"),
        ("Placer.candidates", 'ids = [self.choose("random", None, nodes, list, None, unavailable)]',
         "the random strategy reads neither the actors nor the categories"),
        ("_count", "counts[actor.node] = counts.get(actor.node, 1) + 1",
         "the counts are only compared with each other and with zero (affinity: any; repulsion: the fewest): "
         "adding one to every node that has actors keeps both"),
        ("_count", "counts[actor.node] = counts.get(actor.node, 0) + 2",
         "the counts are only compared with each other and with zero (affinity: any; repulsion: the fewest): "
         "doubling them keeps both"),
    ],
    "beach/code/bundle.py": [
        ("_kind", 'return "XXnot a regular fileXX"',
         "no file type of Linux reaches the fallback (regular, directory, link, fifo, socket and both devices are "
         "each named before): its words cannot be seen here"),
        ("_kind", 'return "NOT A REGULAR FILE"',
         "no file type of Linux reaches the fallback (regular, directory, link, fifo, socket and both devices are "
         "each named before): its words cannot be seen here"),
        ("_walk", "st = entry.stat(follow_symlinks=None)",
         "follow_symlinks is a flag: None is false, as False is"),
        ("pack", 'with tarfile.open(fileobj=raw, mode="w", format=None, encoding="utf-8") as tar:',
         "PAX is tarfile's default format since Python 3.8 (said for the reader)"),
        ("pack", 'with tarfile.open(fileobj=raw, mode="w", encoding="utf-8") as tar:',
         "PAX is tarfile's default format since Python 3.8 (said for the reader)"),
        ("pack", 'with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding=None) as tar:',
         "in PAX, tarfile writes every name in UTF-8 whatever the encoding, unless a name is not valid UTF-8, which "
         "the walk refuses first"),
        ("pack", 'with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, ) as tar:',
         "in PAX, tarfile writes every name in UTF-8 whatever the encoding, unless a name is not valid UTF-8, which "
         "the walk refuses first"),
        ("pack", 'with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding="XXutf-8XX") as tar:',
         "in PAX, tarfile writes every name in UTF-8 whatever the encoding, unless a name is not valid UTF-8, which "
         "the walk refuses first"),
        ("pack", "data = gzip.compress(raw.getvalue(), mtime=0)",
         "9 is gzip.compress's default level (said for the reader: the bytes, so the digest, depend on it)"),
        ("_extract",
         "stream = _Capped(gzip.GzipFile(fileobj=io.BytesIO(data), mode=None), cap=2 * limit + _MB, limit=limit)",
         "GzipFile reads a file object opened for reading whatever mode says when it is None or absent"),
        ("_extract", "stream = _Capped(gzip.GzipFile(fileobj=io.BytesIO(data), ), cap=2 * limit + _MB, limit=limit)",
         "GzipFile reads a file object opened for reading whatever mode says when it is None or absent"),
        ("_extract", 'tar = tarfile.open(fileobj=stream, mode="r|", encoding=None)',
         "without an encoding tarfile reads names in the file system's, UTF-8 on every Linux Python 3.11 runs on "
         "(PEP 538, 540)"),
        ("_extract", 'tar = tarfile.open(fileobj=stream, mode="r|", )',
         "without an encoding tarfile reads names in the file system's, UTF-8 on every Linux Python 3.11 runs on "
         "(PEP 538, 540)"),
        ("_extract", "wrote = None",
         "None is false, as False is"),
        ("_extract", "for i in range(len(parts)):",
         "the extra prefix key[:0] is the empty tuple, never in seen: the check passes it by"),
        ("_extract", "for i in range(1, len(parts) + (2 if member.isdir() else 0)):",
         "the extra prefix key[:len + 1] is the directory itself again, made the step before"),
        ("_extract", "source = tar.extractfile(member)\nexcept _UNREADABLE as e:\nraise _corrupt(e) from e\n"
                     "raise _corrupt(None) from e",
         "in stream mode tarfile's extractfile reads nothing: no archive makes it raise (its _corrupt is defence)"),
        ("_extract", "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, )",
         "the file's mode is set by fchmod before it is closed, in a directory only this process can enter"),
        ("_extract", "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 385)",
         "the file's mode is set by fchmod before it is closed, in a directory only this process can enter"),
        ("_extract", "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL & os.O_NOFOLLOW, 0o600)",
         "the directory is new and private, and duplicates and links are refused before: O_EXCL and O_NOFOLLOW are "
         "defence in depth no archive reaches"),
        ("_extract", "chunk = source.read(None)",
         "the member's size, checked against the limit just before, bounds what tarfile yields: one read or many, "
         "the same bytes"),
        ("_extract", "None",
         "tarfile yields exactly the header's size, checked before: the count of written bytes is defence in depth "
         "no archive reaches"),
        ("_extract", 'f"bundle entry {name!r} takes the bundle past the limit of {_mb(None)} unpacked "',
         "tarfile yields exactly the header's size, checked before: the count of written bytes is defence in depth "
         "no archive reaches"),
        ("_extract", '"XX(a gzip bomb?)XX"',
         "(at the count of written bytes) tarfile yields exactly the header's size, checked before: defence in "
         "depth no archive reaches"),
        ("_extract", '"(A GZIP BOMB?)"',
         "(at the count of written bytes) tarfile yields exactly the header's size, checked before: defence in "
         "depth no archive reaches"),
        ("_extract", "while stream.read(None):", "the capped stream reads None as its chunk size"),
        ("files", "with tempfile.TemporaryDirectory(prefix=None) as tmp:",
         "the temporary directory's name is never seen"),
        ("files", 'with tempfile.TemporaryDirectory(prefix="XXbeach-bundle-XX") as tmp:',
         "the temporary directory's name is never seen"),
        ("files", 'with tempfile.TemporaryDirectory(prefix="BEACH-BUNDLE-") as tmp:',
         "the temporary directory's name is never seen"),
        ("files", 'root = Path(tmp) / "XXbXX"',
         "the name of the unpacked directory is never seen"),
        ("files", 'root = Path(tmp) / "B"',
         "the name of the unpacked directory is never seen"),
        ("Cache.get", "shutil.rmtree(entry, ignore_errors=None)",
         "the entry was just read: only another process removing it at the same moment tells the two apart"),
        ("Cache.get", "shutil.rmtree(entry, )",
         "the entry was just read: only another process removing it at the same moment tells the two apart"),
        ("Cache.get", "shutil.rmtree(entry, ignore_errors=False)",
         "the entry was just read: only another process removing it at the same moment tells the two apart"),
        ("Cache.put", "shutil.rmtree(tmp, ignore_errors=None)",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("unpack", "shutil.rmtree(tmp, ignore_errors=None)",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("Cache.put", "shutil.rmtree(tmp, )",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("unpack", "shutil.rmtree(tmp, )",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("Cache.put", "shutil.rmtree(tmp, ignore_errors=False)",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("unpack", "shutil.rmtree(tmp, ignore_errors=False)",
         "the temporary directory is this call's own: removing it fails in no case a test can make"),
        ("Cache._evict", "shutil.rmtree(self.root / name, ignore_errors=None)",
         "only another process removing the same entry at the same moment tells the two apart"),
        ("Cache._evict", "shutil.rmtree(self.root / name, )",
         "only another process removing the same entry at the same moment tells the two apart"),
        ("Cache._evict", "shutil.rmtree(self.root / name, ignore_errors=False)",
         "only another process removing the same entry at the same moment tells the two apart"),
        ("Cache._evict", "break  # removed meanwhile",
         "only an entry removed by another process during the listing tells the two apart"),
        ("Cache._evict", "return",
         "nothing follows the loop"),
        ("Cache._evict", "break",
         "the entry to keep was used last: it sorts last, so nothing follows it"),
    ],
}

DETECTED = {"killed", "timeout", "segfault"}  # a timeout or a crash (SIGKILL, SIGSEGV) is a failing test too


def module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def mutant_globs(path: str) -> list[str]:
    """The mutants of ``path`` that are measured: the module's own functions (``x_f``) and methods
    (``xǁClassǁm``), not a submodule's; of a module in `PARTS`, those of its pure functions only."""
    if path in PARTS:
        return [module_name(path) + (f".x_{name}__mutmut_*" if "." not in name else
                                     ".xǁ" + name.replace(".", "ǁ") + "__mutmut_*") for name in PARTS[path]]
    return [module_name(path) + ".x*"]


@dataclass
class Row:
    path: str
    total: int = 0
    detected: int = 0
    fresh: int = 0  # of the detected: killed only in a fresh process
    timeout: int = 0
    equivalent: list[tuple[str, str, str]] = field(default_factory=list)  # (mutant, line, why)
    survived: list[tuple[str, str]] = field(default_factory=list)  # (mutant, diff)

    @property
    def score(self) -> float:
        return 100.0 * self.detected / self.total if self.total else 0.0


def run_mutmut(path: str, children: int) -> None:
    """mutmut run on one module's mutants (its results land in mutants/<path>.meta)."""
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *mutant_globs(path)]
    # mutmut keeps which tests reach which function from run to run, and refreshes it when the code
    # changes, not when the tests do: start afresh, so a test added since counts
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    print(f"$ {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def exit_codes(path: str) -> dict[str, int | None]:
    meta = MUTANTS / f"{path}.meta"
    if not meta.exists():
        return {}
    prefix = module_name(path) + ".x"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: code for name, code in codes.items()
            if name.startswith(prefix) and (path not in PARTS or function_of(name) in PARTS[path])}


def load_fresh() -> dict[str, int]:
    return json.loads(FRESH.read_text()) if FRESH.exists() else {}


def own_tests(path: str) -> Path:
    """The unit test module of ``path`` (tests/unit/test_<module>.py)."""
    stem = Path(path).stem if Path(path).stem != "__init__" else Path(path).parent.name
    return Path("tests") / "unit" / f"test_{stem}.py"


def tests_of(mutant: str, path: str) -> list[str]:
    """The unit tests a mutant is run against in a fresh process: the module's own, and every other
    that mutmut saw reach the mutated function (fewer tests can only make a kill less likely, so the
    choice never flatters a score)."""
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    own = own_tests(path)
    reached = {t for t in stats.get(mutant.rpartition("__mutmut_")[0], ()) if not t.startswith(f"{own}::")}
    return [str(own), *sorted(reached)] if (ROOT / own).exists() else ["tests/unit"]


def run_fresh(mutant: str, path: str) -> int:
    """Run ``mutant``'s unit tests (`tests_of`) in a new process with it switched on; their exit code."""
    env = dict(os.environ, MUTANT_UNDER_TEST=mutant, PYTHONPATH=str(MUTANTS))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:beach",
           *tests_of(mutant, path)]
    return subprocess.run(cmd, cwd=MUTANTS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=600).returncode


def recheck(path: str) -> None:
    """Run every mutant of ``path`` that mutmut did not see killed again, in a fresh process."""
    from mutmut.stats import status_by_exit_code

    fresh = load_fresh()
    todo = [m for m, code in exit_codes(path).items() if status_by_exit_code[code] not in DETECTED]
    print(f"  {len(todo)} not killed under mutmut: running each in a fresh process", flush=True)
    for mutant in todo:
        fresh[mutant] = run_fresh(mutant, path)
        FRESH.write_text(json.dumps(fresh, indent=1, sort_keys=True))


def diff_of(mutant: str, path: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return get_diff_for_mutant(mutant, path=Path(path))
    finally:
        os.chdir(cwd)


def function_of(mutant: str) -> str:
    """The function a mutant is of, as the source names it: "xǁTargetsǁroute__mutmut_3" → "Targets.route"."""
    mangled = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    return mangled.removeprefix("x_") if mangled.startswith("x_") else ".".join(mangled.split("ǁ")[1:])


def mutated_line(diff: str) -> str:
    return next((line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")),
                "")


def same_codec(diff: str) -> bool:
    """True if the mutant only changes the case of codec names (Python's codec lookup ignores case)."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1 or removed == added or removed[0].lower() != added[0].lower():
        return False
    pairs = [(a, b) for a, b in zip(re.findall(r'"([^"]*)"', removed[0]), re.findall(r'"([^"]*)"', added[0]),
                                    strict=True) if a != b]
    try:
        return bool(pairs) and all(codecs.lookup(a).name == codecs.lookup(b).name for a, b in pairs)
    except LookupError:
        return False


def matches(pattern: str, line: str, diff: str) -> bool:
    """Whether an `EQUIVALENT` pattern names this mutant: its mutated line, or (when one line is not
    enough to tell mutants apart) several lines of its diff in a row, each stripped of its marker."""
    if "\n" not in pattern:
        return pattern == line
    want = pattern.split("\n")
    have = [row[1:].strip() for row in diff.splitlines()[3:]]  # (past the ---, +++ and @@ lines)
    return any(have[i:i + len(want)] == want for i in range(len(have)))


def row_of(path: str) -> Row:
    from mutmut.stats import status_by_exit_code

    fresh = load_fresh()
    row = Row(path)
    for mutant, code in sorted(exit_codes(path).items(), key=lambda item: int(item[0].rpartition("_")[2])):
        row.total += 1
        status = status_by_exit_code[code]
        if status in DETECTED:
            row.detected += 1
            row.timeout += status == "timeout"
            continue
        if fresh.get(mutant) not in (None, 0, 5):  # 0: passed; 5: no test collected
            row.detected += 1
            row.fresh += 1
            continue
        diff = diff_of(mutant, path)
        line = mutated_line(diff)
        why = next((reason for function, pattern, reason in EQUIVALENT.get(path, [])
                    if function == function_of(mutant) and matches(pattern, line, diff)), None)
        if why is None and same_codec(diff):
            why = "codec names are case-insensitive: the same codec"
        if why is None:
            row.survived.append((mutant, diff))
        else:
            row.equivalent.append((mutant, line, why))
    return row


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "beach", "tests"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    return head.strip() + (" (with uncommitted changes)" if dirty.strip() else "")


def table(rows: list[Row]) -> str:
    lines = [f"Mutation score against tests/unit/ alone, {datetime.date.today()}, commit {commit()}, "
             f"mutmut {version()}:", "",
             "| module | mutants | killed | of which only in a fresh process | timed out | equivalent "
             "| survived | score |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        part = f" ({', '.join(PARTS[r.path])})" if r.path in PARTS else ""
        lines.append(f"| {r.path}{part} | {r.total} | {r.detected - r.timeout} | {r.fresh} | {r.timeout} "
                     f"| {len(r.equivalent)} | {len(r.survived)} | {r.score:.1f} % |")
    return "\n".join(lines)


def version() -> str:
    from importlib.metadata import version as of

    return of("mutmut")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="paths of modules (default: the settled ones)")
    parser.add_argument("--report", action="store_true", help="print the table of the last runs, run nothing")
    parser.add_argument("--children", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--min", type=float, default=90.0, help="the lowest acceptable score (default 90)")
    args = parser.parse_args()
    paths = args.modules or SETTLED
    if not args.report:
        for path in paths:
            run_mutmut(path, args.children)
            recheck(path)
    rows = [row_of(path) for path in paths if exit_codes(path)]
    failed = False
    for r in rows:
        for mutant, line, why in r.equivalent:
            print(f"equivalent  {mutant}: {line}\n            {why}")
        for mutant, diff in r.survived:
            print(f"SURVIVED    {mutant}\n{diff}\n")
        failed |= r.score < args.min or bool(r.survived)
    print()
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
