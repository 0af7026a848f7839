"""Code bundles: a realm's code directory as one immutable, content-addressed archive.

:func:`pack` turns a directory into a :class:`Bundle`, a deterministic gzip'd tar named by the
SHA-256 of its bytes, ready to be uploaded to a JetStream object store. :func:`unpack` turns such
bytes back into a directory on a node, refusing anything that could write outside it or fill the
disk. :class:`Cache` keeps unpacked bundles on a node, keyed by digest, within a byte budget.

Nothing here talks to NATS: these are pure functions over bytes and paths. Every refusal raises
:class:`BundleError`, naming the offending path or archive entry and what is wrong with it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from beach.errors import BundleError

__all__ = [
    "MAX_BUNDLE_BYTES",
    "REQUIREMENTS",
    "Bundle",
    "BundleError",
    "Cache",
    "digest_of",
    "files",
    "pack",
    "requirements",
    "unpack",
    "verify",
]

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""The default limit on a bundle: on the total size of its files, and on the archive itself."""

REQUIREMENTS = "requirements.txt"
"""A file at the root of a bundle that declares the pip requirements of the realm's code."""

_MB = 1024 * 1024
_CHUNK = 1024 * 1024
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Bundle:
    """A packed code directory: the archive's bytes, their digest, their size and how many files
    it holds."""

    data: bytes
    digest: str
    size: int
    files: int


def _mb(n: int) -> str:
    return f"{n / _MB:.1f} MB ({n} bytes)"


def digest_of(data: bytes) -> str:
    """The content address of ``data``: ``"sha256:"`` followed by the hex SHA-256 of the bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify(data: bytes, digest: str) -> None:
    """Check that ``data`` is the bundle named by ``digest``.

    Raises :class:`BundleError` (``bundle digest mismatch: expected X, got Y``) when it is not.
    """
    actual = digest_of(data)
    if actual != digest:
        raise BundleError(f"bundle digest mismatch: expected {digest}, got {actual}")


# --- pack ---------------------------------------------------------------------------------------


def _skipped(name: str, is_dir: bool) -> bool:
    # Dot-names cover .git, .venv, editor files; bytecode is rebuilt on the node anyway.
    return name.startswith(".") or (is_dir and name == "__pycache__") or (not is_dir and name.endswith(".pyc"))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _walk(root: Path, limit: int) -> list[tuple[str, Path, bool]]:
    """Every file to pack as (relative POSIX name, path, executable), sorted by name; stat only."""
    found: list[tuple[str, Path, bool]] = []
    total = 0
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            raise BundleError(f"cannot read directory {directory}: {e.strerror or e}") from e
        for entry in entries:
            path = Path(entry.path)
            rel = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise BundleError(f"cannot read {path}: {e.strerror or e}") from e
            if _skipped(entry.name, stat.S_ISDIR(st.st_mode)):
                continue
            if stat.S_ISLNK(st.st_mode):
                raise BundleError(f"{path} is a symbolic link: links are refused in a bundle, not followed")
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise BundleError(f"{path}: the file name is not valid UTF-8") from None
            if "\\" in entry.name:
                # unpack refuses backslashes (a Windows path separator), so never pack one
                raise BundleError(f"{path}: a file name with a backslash cannot be deployed")
            if stat.S_ISDIR(st.st_mode):
                pending.append((path, rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > limit:
                    raise BundleError(
                        f"{root} holds at least {_mb(total)} of files, over the bundle limit of {_mb(limit)} "
                        "(checked before any upload)"
                    )
                found.append((rel, path, bool(st.st_mode & stat.S_IXUSR)))
            else:
                raise BundleError(f"{path} is {_kind(st.st_mode)}: only regular files and directories can be deployed")
    found.sort()
    return found


def _read(path: Path, most: int) -> bytes:
    # O_NOFOLLOW and the fstat guard against the file having been swapped for a link or a fifo since
    # the walk; O_NONBLOCK keeps a swapped-in fifo from blocking the open.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{path} changed while packing: it is no longer a regular file")
        return f.read(most + 1)


def pack(directory: str | os.PathLike[str], limit: int = MAX_BUNDLE_BYTES) -> Bundle:
    """Pack every regular file under ``directory`` into a deterministic, content-addressed bundle.

    The archive is a gzip'd tar of relative POSIX names in sorted order, with only what the code
    needs: contents and whether each file is executable (mode 0o755, else 0o644). Owners, times and
    other permission bits are left out, so the same tree always gives the same bytes and digest
    (with the same Python and zlib). Empty directories are not kept.

    Skipped: ``__pycache__`` directories, ``*.pyc`` files, and every file or directory whose name
    starts with ``"."`` (``.git``, ``.venv``, ``.env``...), wherever they are in the tree.

    Raises :class:`BundleError` when ``directory`` does not exist or is not a directory, when it
    holds no file to deploy, when the tree holds a symbolic link (refused, not followed), a fifo, a
    socket or a device, or when its files come to more than ``limit`` bytes (found while walking,
    before anything is read) or the archive does.
    """
    root = Path(directory)
    if not root.exists():
        raise BundleError(f"no such directory: {root}")
    if not root.is_dir():
        raise BundleError(f"no such directory: {root} is not a directory")
    found = _walk(root, limit)
    if not found:
        raise BundleError(f"nothing to deploy in {root}: no files (after skipping __pycache__, *.pyc and dot-files)")

    raw = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for rel, path, executable in found:
            content = _read(path, limit - total)
            total += len(content)
            if total > limit:
                # the file grew since the walk
                raise BundleError(
                    f"{root} holds at least {_mb(total)} of files, over the bundle limit of {_mb(limit)} "
                    "(checked before any upload)"
                )
            info = tarfile.TarInfo(rel)
            info.size = len(content)
            info.mode = 0o755 if executable else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    data = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    if len(data) > limit:
        raise BundleError(
            f"the bundle of {root} is {_mb(len(data))} compressed, over the bundle limit of {_mb(limit)} "
            "(checked before any upload)"
        )
    return Bundle(data=data, digest=digest_of(data), size=len(data), files=len(found))


# --- unpack -------------------------------------------------------------------------------------


class _Capped:
    """A file-like reader over the decompressed stream that refuses to go past ``cap`` bytes."""

    def __init__(self, stream: gzip.GzipFile, cap: int, limit: int) -> None:
        self.stream = stream
        self.cap = cap
        self.limit = limit
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(_CHUNK if size is None or size < 0 else size)
        self.total += len(chunk)
        if self.total > self.cap:
            raise BundleError(
                f"bundle expands to more than {_mb(self.cap)} of tar stream, over what the limit of "
                f"{_mb(self.limit)} allows (a gzip bomb?)"
            )
        return chunk

    # The rest of what `tarfile.open` asks of a file object; a stream ("r|") only reads.

    def tell(self) -> int:
        return self.total

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def close(self) -> None:
        self.stream.close()


def _corrupt(e: BaseException) -> BundleError:
    return BundleError(f"not a beach bundle: {str(e) or type(e).__name__}")


_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = tar.next()
        except BundleError:
            raise
        except _UNREADABLE as e:
            raise _corrupt(e) from e
        if member is None:
            return
        yield member


def _entry_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a fifo"
    return f"of tar type {member.type!r}"


def _safe_parts(member: tarfile.TarInfo) -> list[str]:
    """The entry's name as path segments, refusing any that could land outside the destination."""
    name = member.name
    if "\x00" in name:
        raise BundleError(f"bundle entry {name!r} has a NUL in its name")
    if "\\" in name:
        raise BundleError(f"bundle entry {name!r} has a backslash in its name")
    if name.startswith("/"):
        raise BundleError(f"bundle entry {name!r} has an absolute name")
    parts = name.split("/")
    if ".." in parts:
        raise BundleError(f"bundle entry {name!r} has a '..' segment: it would point outside the destination")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"bundle entry {name!r}: the name is not valid UTF-8") from None
    # "./a" and "a//b" name the same file as "a" and "a/b"
    return [p for p in parts if p not in ("", ".")]


def _extract(data: bytes, into: Path, limit: int) -> bool:
    """Write the bundle's files under the fresh, empty directory ``into``; False if it holds none."""
    # The tar stream also carries headers and padding; past this much it is a bomb whatever it holds.
    stream = _Capped(gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"), cap=2 * limit + _MB, limit=limit)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8")
    except BundleError:
        raise
    except _UNREADABLE as e:
        raise _corrupt(e) from e
    seen: dict[tuple[str, ...], bool] = {}  # parts -> is a directory
    total = 0
    wrote = False
    with tar:
        for member in _members(tar):
            name = member.name
            parts = _safe_parts(member)
            if not (member.isreg() or member.isdir()):
                raise BundleError(f"bundle entry {name!r} is {_entry_kind(member)}: only files and directories")
            if member.sparse is not None:
                raise BundleError(f"bundle entry {name!r} is a sparse file: only plain files and directories")
            if not parts:
                if member.isdir():
                    continue  # the root itself, as in "./"
                raise BundleError(f"bundle entry {name!r} has an empty name")
            key = tuple(parts)
            for i in range(1, len(parts)):
                if seen.get(key[:i]) is False:
                    raise BundleError(f"bundle entry {name!r} is under {'/'.join(parts[:i])!r}, which is a file")
            if key in seen and not (member.isdir() and seen[key]):
                raise BundleError(f"bundle entry {name!r} appears twice in the bundle")
            for i in range(1, len(parts) + (1 if member.isdir() else 0)):
                if key[:i] not in seen:
                    path = into.joinpath(*parts[:i])
                    os.mkdir(path)
                    os.chmod(path, 0o755)
                    seen[key[:i]] = True
            if member.isdir():
                continue
            if total + member.size > limit:
                raise BundleError(
                    f"bundle entry {name!r} would take the bundle past the limit of {_mb(limit)} unpacked "
                    "(a gzip bomb?)"
                )
            try:
                source = tar.extractfile(member)
            except _UNREADABLE as e:
                raise _corrupt(e) from e
            assert source is not None  # a regular file always has a reader
            path = into.joinpath(*parts)
            seen[key] = False
            mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while True:
                    try:
                        chunk = source.read(_CHUNK)
                    except BundleError:
                        raise
                    except _UNREADABLE as e:
                        raise _corrupt(e) from e
                    if not chunk:
                        break
                    # counted as written: the header's size is a claim, these are the bytes
                    total += len(chunk)
                    if total > limit:
                        raise BundleError(
                            f"bundle entry {name!r} takes the bundle past the limit of {_mb(limit)} unpacked "
                            "(a gzip bomb?)"
                        )
                    out.write(chunk)
                os.fchmod(out.fileno(), mode)
            wrote = True
        # Read to the end of the gzip stream, so a truncated or trailing-garbage archive fails its
        # length and CRC check instead of passing as a shorter one.
        try:
            while stream.read(_CHUNK):
                pass
        except BundleError:
            raise
        except _UNREADABLE as e:
            raise _corrupt(e) from e
    return wrote


def unpack(data: bytes, destination: str | os.PathLike[str], limit: int = MAX_BUNDLE_BYTES) -> None:
    """Unpack the bundle ``data`` into the directory ``destination``, which is created.

    Only regular files and directories are written (files 0o644, or 0o755 when executable in the
    archive); ``tarfile.extractall`` is not used. The files are written into a temporary sibling of
    ``destination`` that is renamed into place at the end, so a refusal or a crash never leaves a
    half-unpacked destination. If ``destination`` appears meanwhile (another process unpacking the
    same bundle), that one is kept and this copy removed.

    Raises :class:`BundleError`, naming the entry, when ``destination`` exists and is not an empty
    directory, when an entry has an absolute name, a ``..`` segment, a backslash or a NUL, when it
    is a symbolic or hard link, a device, a fifo or anything but a file or directory, when the
    files come to more than ``limit`` bytes unpacked (counted as they are read: a gzip bomb), and
    ``not a beach bundle: ...`` when the bytes are not a complete gzip'd tar.
    """
    dest = Path(destination)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BundleError(f"cannot unpack into {dest}: it exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise BundleError(f"cannot unpack into {dest}: it exists and is not empty")
    if len(data) > limit:
        raise BundleError(f"bundle is {_mb(len(data))}, over the bundle limit of {_mb(limit)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
    try:
        if not _extract(data, tmp, limit):
            raise BundleError("not a beach bundle: it holds no files")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir() or dest.is_symlink():
                raise
            # Another process unpacked it first; same digest, same files: keep theirs.
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def files(data: bytes, limit: int = MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """The files of the bundle ``data``, ``{relative POSIX name: content}``, refused as `unpack`
    refuses (it unpacks into a temporary directory and reads them back)."""
    with tempfile.TemporaryDirectory(prefix="beach-bundle-") as tmp:
        root = Path(tmp) / "b"
        unpack(data, root, limit)
        return {rel: path.read_bytes() for rel, path, _ in _walk(root, limit)}


# --- requirements -------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9_.*+!-]+"
_VERSIONS = rf"{_VERSION}(?:\s*,\s*{_VERSION})*"
_SPECIFIER = re.compile(
    rf"{_NAME}\s*"
    rf"(?:\[\s*(?:{_NAME}(?:\s*,\s*{_NAME})*)?\s*\])?\s*"
    rf"(?:{_VERSIONS}|\(\s*{_VERSIONS}\s*\))?\s*"
    r"(?:;[A-Za-z0-9_.<>=!~'\"()\s,*+-]+)?"
)
_COMMENT = re.compile(r"(?:^|\s)#.*$")
# pip installs a requirement that looks like an archive from that file, if it exists
_ARCHIVES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar.lz", ".tlz")


def _refusal(line: str) -> str | None:
    if line.startswith("-"):
        return "is a pip option"
    if "://" in line:
        return "is a URL"
    if line.startswith((".", "~")) or "/" in line or "\\" in line:
        return "is a path"
    if "@" in line:
        return "is a direct reference"
    if any(token.startswith("-") for token in line.split()):
        return "carries a pip option"
    if line.split(";")[0].strip().lower().endswith(_ARCHIVES):
        return "looks like an archive file name"
    if not _SPECIFIER.fullmatch(line):
        return "is not a plain requirement specifier"
    return None


def requirements(directory: str | os.PathLike[str]) -> list[str]:
    """The pip requirements a bundle declares: the non-empty, non-comment lines of
    ``<directory>/requirements.txt``, in order, or ``[]`` when there is no such file.

    Only plain specifiers are accepted: a name, optional extras, versions and an environment marker
    (``six==1.16.0``, ``attrs>=22``, ``rich[jupyter]~=13.0; python_version >= "3.11"``).

    Raises :class:`BundleError`, naming the file, line and what it is, for a line that is a pip
    option (``-e``, ``-r``, ``--index-url``...) or carries one, a URL, a path or a direct reference,
    since each would let a bundle point pip anywhere; and for a file that is not UTF-8 text.
    """
    path = Path(directory) / REQUIREMENTS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{path} is not UTF-8 text: {e}") from e
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        wrong = _refusal(line)
        if wrong:
            raise BundleError(
                f"{path}:{number}: {line!r} {wrong}; a bundle's requirements may only name packages "
                "(like six==1.16.0), so that it cannot point pip anywhere"
            )
        found.append(line)
    return found


# --- cache --------------------------------------------------------------------------------------


def _hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise BundleError(f"not a bundle digest: {digest!r} (expected sha256:<64 lowercase hex digits>)")
    return match.group(1)


def _tree_bytes(path: Path) -> int:
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _touch(path: Path) -> None:
    # An explicit nanosecond time: a plain touch takes the kernel's coarse clock, which can give two
    # uses in quick succession the same time and the eviction order a coin toss.
    path.touch(mode=0o644)
    now = time.time_ns()
    os.utime(path, ns=(now, now))


class Cache:
    """A bounded on-disk cache of unpacked bundles, keyed by digest.

    Each bundle has a directory ``root/<hex digest>`` holding the archive (``bundle.tgz``), the
    unpacked files (``code``) and a ``used`` file whose time records the last use. When the entries
    come to more than ``max_bytes`` (archives and files), the least recently used are removed; the
    entry just stored is always kept, even if alone it is over the budget. An evicted entry's code
    directory disappears, so callers must not evict under a running host (size the budget for it).
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = 512 * 1024 * 1024,
                 bundle_limit: int = MAX_BUNDLE_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.bundle_limit = bundle_limit  # what one bundle may unpack to (the config's max_bundle_bytes)

    def path(self, digest: str) -> Path:
        """Where the unpacked bundle ``digest`` is or would be: ``root/<hex>/code``.

        Raises :class:`BundleError` when ``digest`` is not of the form ``sha256:<64 hex digits>``.
        """
        return self.root / _hex(digest) / "code"

    def get(self, digest: str) -> Path | None:
        """The directory of the unpacked bundle ``digest``, or ``None`` when it is not cached.

        The stored archive is hashed again on every call (the unpacked files are not compared). A use
        is recorded for the eviction order.

        Raises :class:`BundleError` for a malformed digest, and when the stored archive no longer
        matches its digest: the entry is then removed, and the message names the digest.
        """
        entry = self.root / _hex(digest)
        code, archive = entry / "code", entry / "bundle.tgz"
        if not code.is_dir():
            return None
        try:
            data = archive.read_bytes()
        except FileNotFoundError:
            return None
        actual = digest_of(data)
        if actual != digest:
            shutil.rmtree(entry, ignore_errors=True)
            raise BundleError(
                f"cached bundle {digest} was tampered with or is corrupt: its bundle.tgz hashes to {actual}; "
                "the entry was removed"
            )
        _touch(entry / "used")
        return code

    def put(self, data: bytes, digest: str) -> Path:
        """Store the bundle ``data`` under ``digest`` and return the directory of its unpacked files.

        The bytes are verified first; a bundle already cached (and intact) is not unpacked again.
        Afterwards the least recently used other entries are evicted while the cache is over
        ``max_bytes``.

        Raises :class:`BundleError` for a malformed digest, bytes that do not match it, and
        everything :func:`unpack` refuses.
        """
        hexd = _hex(digest)
        verify(data, digest)
        try:
            found = self.get(digest)
        except BundleError:
            found = None  # a tampered entry, now removed: store a fresh copy
        if found is not None:
            self._evict(keep=hexd)
            return found
        # never writable by others (whatever the umask): an entry planted there would be run as code
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        entry = self.root / hexd
        if entry.exists():
            shutil.rmtree(entry)  # the leftover of an interrupted put: no code or no archive
        tmp = Path(tempfile.mkdtemp(prefix=f".{hexd[:16]}.storing-", dir=self.root))
        try:
            fd = os.open(tmp / "bundle.tgz", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # whatever the umask
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            unpack(data, tmp / "code", self.bundle_limit)
            _touch(tmp / "used")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, entry)
            except OSError:
                if not (entry / "code").is_dir():
                    raise
                shutil.rmtree(tmp)  # another process stored it meanwhile: keep theirs
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _touch(entry / "used")
        self._evict(keep=hexd)
        return entry / "code"

    def _evict(self, keep: str) -> None:
        entries: list[tuple[int, str, int]] = []
        for child in self.root.iterdir():
            if not _HEX.fullmatch(child.name):
                continue  # in-progress ".storing-" directories and anything else not ours
            try:
                used = (child / "used").stat().st_mtime_ns
            except FileNotFoundError:
                try:
                    used = child.stat().st_mtime_ns
                except FileNotFoundError:
                    continue  # removed meanwhile
            entries.append((used, child.name, _tree_bytes(child)))
        total = sum(size for _used, _name, size in entries)
        for _used, name, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            shutil.rmtree(self.root / name, ignore_errors=True)
            total -= size
