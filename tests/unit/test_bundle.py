"""Code bundles (beach.code.bundle): deterministic packing, safe unpacking, requirements, the node cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import stat
import tarfile
import time
from pathlib import Path

import pytest

from beach.code import bundle as bundle_module
from beach.code.bundle import (
    MAX_BUNDLE_BYTES,
    REQUIREMENTS,
    Bundle,
    BundleError,
    Cache,
    digest_of,
    pack,
    requirements,
    unpack,
    verify,
)
from beach.errors import BeachError


def make_tree(root: Path) -> Path:
    """A small realm: a nested package, a data file, an executable script."""
    (root / "shop" / "orders").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "orders" / "__init__.py").write_text("from .actor import Orders\n")
    (root / "shop" / "orders" / "actor.py").write_text("class Orders:\n    pass\n")
    (root / "shop" / "data").mkdir()
    (root / "shop" / "data" / "prices.json").write_bytes(b'{"apple": 3}\n')
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "run.sh", 0o755)
    os.chmod(root / "shop" / "data" / "prices.json", 0o600)
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tgz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """A hand-crafted gzip'd tar: each member with its content (None for non-files)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue())


def member(name: str, content: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, content


# --- pack -------------------------------------------------------------------------------------------


def test_pack_is_deterministic_across_times_permissions_and_copies(tmp_path):
    tree = make_tree(tmp_path / "a")
    first = pack(tree)
    assert isinstance(first, Bundle)
    assert first.digest == "sha256:" + hashlib.sha256(first.data).hexdigest()
    assert first.size == len(first.data)
    assert first.files == 5
    assert pack(tree) == first

    for path in tree.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert pack(tree).data == first.data

    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(tree, copy)
    (copy / "shop" / "__init__.py").write_text("")  # rewritten: same content...
    os.utime(copy / "shop" / "__init__.py", (2_000_000_000, 2_000_000_000))  # ...a new mtime
    os.chmod(copy / "shop" / "data" / "prices.json", 0o664)  # same "not executable"
    again = pack(copy)
    assert again.data == first.data
    assert again.digest == first.digest


def test_the_digest_does_not_depend_on_the_time_of_packing(tmp_path, monkeypatch):
    # gzip writes the time of compression into its header unless told otherwise: pack "years apart"
    tree = make_tree(tmp_path / "t")
    monkeypatch.setattr(time, "time", lambda: 1_000_000_000.0)
    then = pack(tree)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    now = pack(tree)
    assert now.digest == then.digest
    assert now.data[4:8] == b"\0\0\0\0"  # the gzip header's MTIME field: none


def test_pack_archive_carries_no_owner_time_or_extra_mode(tmp_path):
    tree = make_tree(tmp_path / "t")
    with tarfile.open(fileobj=io.BytesIO(pack(tree).data), mode="r:gz") as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert all(i.isreg() for i in infos)
    assert {(i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos} == {(0, 0, "", "", 0)}
    modes = {i.name: i.mode for i in infos}
    assert modes["bin/run.sh"] == 0o755
    assert modes["shop/data/prices.json"] == 0o644
    assert modes["shop/orders/actor.py"] == 0o644


def test_different_content_gives_a_different_digest(tmp_path):
    tree = make_tree(tmp_path / "t")
    before = pack(tree).digest
    (tree / "shop" / "orders" / "actor.py").write_text("class Orders:\n    pass  \n")
    changed = pack(tree).digest
    assert changed != before
    os.chmod(tree / "shop" / "orders" / "actor.py", 0o755)
    assert pack(tree).digest != changed  # the executable bit is part of the content
    (tree / "shop" / "orders" / "renamed.py").write_text("")
    assert pack(tree).digest not in (before, changed)


def test_round_trip_keeps_packages_data_and_the_executable_bit(tmp_path):
    tree = make_tree(tmp_path / "t")
    out = tmp_path / "out" / "code"
    unpack(pack(tree).data, out)
    assert files_of(out) == files_of(tree)
    assert (out / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (out / "shop" / "data" / "prices.json").stat().st_mode & 0o777 == 0o644
    assert (out / "shop" / "orders").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in out.parent.iterdir()) == ["code"]  # no temporary directory left


def test_pack_skips_pycache_dotfiles_and_pyc(tmp_path):
    tree = make_tree(tmp_path / "t")
    plain = pack(tree)
    (tree / "shop" / "__pycache__").mkdir()
    (tree / "shop" / "__pycache__" / "actor.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (tree / "stray.pyc").write_bytes(b"\x00")
    (tree / ".git" / "objects").mkdir(parents=True)
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / "shop" / ".env").write_text("SECRET=1\n")
    (tree / ".venv").symlink_to("/usr")  # skipped by name, so not refused as a link
    packed = pack(tree)
    assert packed.digest == plain.digest
    assert packed.files == plain.files


def test_symlinks_are_refused_not_followed(tmp_path):
    tree = make_tree(tmp_path / "t")
    (tree / "shop" / "link.py").symlink_to(tree / "shop" / "__init__.py")
    with pytest.raises(BundleError, match=r"link\.py is a symbolic link: links are refused"):
        pack(tree)
    (tree / "shop" / "link.py").unlink()
    (tree / "outside").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BundleError, match=r"outside is a symbolic link"):
        pack(tree)


def test_special_files_are_refused(tmp_path):
    tree = make_tree(tmp_path / "t")
    os.mkfifo(tree / "shop" / "pipe")
    with pytest.raises(BundleError, match=r"pipe is a fifo"):
        pack(tree)


def test_missing_not_a_directory_and_empty_are_refused(tmp_path):
    with pytest.raises(BundleError, match=r"no such directory: .*nowhere"):
        pack(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match=r"no such directory: .*file is not a directory"):
        pack(tmp_path / "file")
    empty = tmp_path / "empty"
    (empty / "__pycache__").mkdir(parents=True)
    (empty / "__pycache__" / "x.pyc").write_bytes(b"")
    (empty / ".git").mkdir()
    (empty / "sub").mkdir()
    with pytest.raises(BundleError, match=r"nothing to deploy in .*empty"):
        pack(empty)


def test_size_limit_is_refused_while_walking(tmp_path, monkeypatch):
    tree = tmp_path / "big"
    tree.mkdir()
    for i in range(3):
        (tree / f"f{i}.bin").write_bytes(b"z" * 1000)

    def no_reading(*args):
        raise AssertionError("a file was read before the size check")

    monkeypatch.setattr(bundle_module, "_read", no_reading)
    with pytest.raises(BundleError) as e:
        pack(tree, limit=1500)
    assert str(e.value) == (f"{tree} holds at least 0.0 MB (2000 bytes) of files, over the bundle limit of "
                            f"0.0 MB (1500 bytes) (checked before any upload)")


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path):
    tree = tmp_path / "sparse"
    tree.mkdir()
    with open(tree / "huge.bin", "wb") as f:
        f.truncate(16 * 1024**3)
    started = time.monotonic()
    with pytest.raises(BundleError, match=r"16384\.0 MB .* over the bundle limit of 64\.0 MB"):
        pack(tree)
    assert time.monotonic() - started < 2


def test_archive_size_is_checked_after_packing(tmp_path):
    tree = tmp_path / "random"
    tree.mkdir()
    (tree / "noise.bin").write_bytes(os.urandom(20_000))  # incompressible: the archive is larger
    with pytest.raises(BundleError, match=r"^the bundle of .*random is 0\.0 MB \(\d+ bytes\) compressed, over the "
                                          r"bundle limit of 0\.0 MB \(20000 bytes\) \(checked before any upload\)$"):
        pack(tree, limit=20_000)
    size = pack(tree, limit=30_000).size
    assert size > 20_000 and pack(tree, limit=size).size == size  # exactly at the limit: fine


def test_digest_and_verify():
    assert digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    verify(b"abc", digest_of(b"abc"))
    with pytest.raises(BundleError, match=r"bundle digest mismatch: expected sha256:0+, got sha256:ba7816bf"):
        verify(b"abc", "sha256:" + "0" * 64)
    assert issubclass(BundleError, BeachError) and issubclass(BundleError, ValueError)
    assert MAX_BUNDLE_BYTES == 64 * 1024 * 1024 and REQUIREMENTS == "requirements.txt"


# --- unpack -----------------------------------------------------------------------------------------


def assert_refused(tmp_path: Path, data: bytes, match: str, limit: int = MAX_BUNDLE_BYTES) -> None:
    """Unpacking ``data`` is refused with ``match``, and leaves nothing behind anywhere."""
    area = tmp_path / f"area{len(list(tmp_path.glob('area*')))}"
    area.mkdir()
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(BundleError, match=match) as err:
        unpack(data, area / "dest", limit=limit)
    cause = err.value.__cause__
    if cause is not None:  # what was wrong with the bytes is said, in the cause's words
        assert str(err.value) == f"not a beach bundle: {str(cause) or type(cause).__name__}"
    assert list(area.iterdir()) == []  # no destination, no temporary sibling
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x").exists()


def test_unpack_refuses_a_parent_segment(tmp_path):
    data = tgz(member("ok.py", b"fine"), member("../evil", b"owned"))
    assert_refused(tmp_path, data, r"'\.\./evil' has a '\.\.' segment")


def test_unpack_refuses_a_nested_parent_segment(tmp_path):
    data = tgz(member("a/ok.py", b"fine"), member("a/../../x", b"owned"))
    assert_refused(tmp_path, data, r"'a/\.\./\.\./x' has a '\.\.' segment")


def test_unpack_refuses_an_absolute_name(tmp_path):
    target = tmp_path / "evil"
    data = tgz(member("ok.py"), member(str(target), b"owned"))
    assert_refused(tmp_path, data, r"has an absolute name")
    assert_refused(tmp_path, tgz(member("/abs", b"owned")), r"'/abs' has an absolute name")


def test_unpack_refuses_backslash_and_nul(tmp_path):
    assert_refused(tmp_path, tgz(member("a\\..\\..\\evil")), r"has a backslash")
    # a ustar name stops at a NUL, so it has to come in a pax header
    assert_refused(tmp_path, tgz(member("ab", pax_headers={"path": "a\x00b"})), r"'a\\x00b' has a NUL")


def test_unpack_refuses_a_symlink_member(tmp_path):
    data = tgz(member("ok.py"), member("link", None, tarfile.SYMTYPE, linkname="/etc/passwd"))
    assert_refused(tmp_path, data, r"'link' is a symbolic link \(to '/etc/passwd'\)")


def test_unpack_refuses_a_hardlink_member(tmp_path):
    data = tgz(member("ok.py"), member("hard", None, tarfile.LNKTYPE, linkname="ok.py"))
    assert_refused(tmp_path, data, r"'hard' is a hard link")


@pytest.mark.parametrize("kind,words", [
    (tarfile.CHRTYPE, "a character device"),
    (tarfile.BLKTYPE, "a block device"),
    (tarfile.FIFOTYPE, "a fifo"),
])
def test_unpack_refuses_devices_and_fifos(tmp_path, kind, words):
    data = tgz(member("ok.py"), member("dev", None, kind, devmajor=1, devminor=3))
    assert_refused(tmp_path, data, rf"'dev' is {words}")


def test_unpack_refuses_a_gzip_bomb(tmp_path):
    data = tgz(member("zeros.bin", b"\x00" * (2 * 1024 * 1024)))
    assert len(data) < 10_000
    assert_refused(tmp_path, data, r"^bundle entry 'zeros\.bin' would take the bundle past the limit of 1\.0 MB "
                                   r"\(1048576 bytes\) unpacked \(a gzip bomb\?\)$", limit=1024 * 1024)


def test_unpack_counts_the_total_over_many_files(tmp_path):
    data = tgz(*(member(f"part{i}.bin", b"\x00" * 400_000) for i in range(3)))
    assert_refused(tmp_path, data, r"'part2\.bin' would take the bundle past the limit", limit=1_000_000)


def test_unpack_counts_the_stream_not_just_the_headers(tmp_path):
    # Headers all claim nothing (thousands of empty files), or the archive ends early and zeros follow
    # inside the gzip: the sizes in the headers are small, the stream is not.
    empties = tgz(*(member(f"e{i}", b"") for i in range(2400)))
    assert len(empties) < 20_000
    assert_refused(tmp_path, empties, r"^bundle expands to more than 1\.0 MB \(1088576 bytes\) of tar stream, over "
                                      r"what the limit of 0\.0 MB \(20000 bytes\) allows \(a gzip bomb\?\)$",
                   limit=20_000)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("ok.py")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    padded = gzip.compress(raw.getvalue() + b"\x00" * (4 * 1024 * 1024))
    assert_refused(tmp_path, padded, r"bundle expands to more than", limit=1024 * 1024)


def test_unpack_refuses_garbage_and_truncated_archives(tmp_path):
    assert_refused(tmp_path, b"this is not a tarball", r"not a beach bundle: .*gzip")
    assert_refused(tmp_path, gzip.compress(b"neither is this, once unzipped" * 40), r"not a beach bundle")
    data = pack(make_tree(tmp_path / "tree")).data
    assert_refused(tmp_path, data[: len(data) // 2], r"not a beach bundle")
    assert_refused(tmp_path, data[:-4], r"not a beach bundle")  # only the gzip trailer is cut
    assert_refused(tmp_path, data + b"trailing junk", r"not a beach bundle")
    assert_refused(tmp_path, gzip.compress(b"\x00" * 10240), r"^not a beach bundle: it holds no files$")


def test_unpack_refuses_duplicates_and_file_directory_clashes(tmp_path):
    assert_refused(tmp_path, tgz(member("a.py"), member("a.py")), r"'a\.py' appears twice")
    assert_refused(tmp_path, tgz(member("a"), member("a/b.py")), r"'a/b\.py' is under 'a', which is a file")
    assert_refused(tmp_path, tgz(member("a/b"), member("a/b/c")), r"^bundle entry 'a/b/c' is under 'a/b', which is a "
                                                                  r"file$")
    directory = member("a", None, tarfile.DIRTYPE)
    assert_refused(tmp_path, tgz(directory, member("a")), r"^bundle entry 'a' appears twice in the bundle$")



def test_unpack_accepts_directories_and_dot_prefixes(tmp_path):
    dir_info = tarfile.TarInfo("./pkg")
    dir_info.type = tarfile.DIRTYPE
    root_info = tarfile.TarInfo(".")
    root_info.type = tarfile.DIRTYPE
    data = tgz((root_info, None), (dir_info, None), member("./pkg/a.py", b"A", mode=0o700),
               member("pkg//b.py", b"B", mode=0o640))
    unpack(data, tmp_path / "out")
    assert files_of(tmp_path / "out") == {"pkg/a.py": b"A", "pkg/b.py": b"B"}
    assert (tmp_path / "out" / "pkg" / "a.py").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "pkg" / "b.py").stat().st_mode & 0o777 == 0o644


def test_unpack_destination_must_be_absent_or_empty(tmp_path):
    data = pack(make_tree(tmp_path / "tree")).data
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack(data, empty)
    assert (empty / "bin" / "run.sh").is_file()
    with pytest.raises(BundleError, match=r"empty.*exists and is not empty"):
        unpack(data, empty)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BundleError, match=r"afile.*exists and is not a directory"):
        unpack(data, tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


def test_unpack_keeps_a_destination_that_appeared_meanwhile(tmp_path, monkeypatch):
    data = pack(make_tree(tmp_path / "tree")).data
    dest = tmp_path / "area" / "code"
    real_rename = os.rename

    renamed = []

    def racing_rename(src, dst):
        # Another process finishes unpacking the same digest just before this one.
        renamed.append(Path(src))
        Path(dst).mkdir()
        Path(dst, "theirs").write_text("first")
        real_rename(src, dst)

    monkeypatch.setattr(bundle_module.os, "rename", racing_rename)
    unpack(data, dest)
    assert files_of(dest) == {"theirs": b"first"}
    # (this one had been written into a hidden sibling, removed once it lost the race)
    assert renamed[0].parent == dest.parent and renamed[0].name.startswith(".code.unpacking-")
    assert [p.name for p in dest.parent.iterdir()] == ["code"]


def test_unpack_refuses_an_archive_over_the_limit_as_is(tmp_path):
    data = tgz(member("noise.bin", os.urandom(5000)))
    assert_refused(tmp_path, data, r"bundle is 0\.0 MB \(\d+ bytes\), over the bundle limit", limit=4000)


# --- requirements -----------------------------------------------------------------------------------


def test_requirements_are_plain_specifiers(tmp_path):
    assert requirements(tmp_path) == []
    (tmp_path / REQUIREMENTS).write_text(
        "# pinned for the realm\n\nsix==1.16.0\nattrs>=22  # inline comment\n"
        "rich[jupyter] ~= 13.0, != 13.1 ; python_version >= \"3.11\"\n   \nPyYAML\n"
    )
    assert requirements(tmp_path) == [
        "six==1.16.0", "attrs>=22", 'rich[jupyter] ~= 13.0, != 13.1 ; python_version >= "3.11"', "PyYAML",
    ]


@pytest.mark.parametrize("line,what", [
    ("-e .", "is a pip option"),
    ("--index-url x", "is a pip option"),
    ("-r other.txt", "is a pip option"),
    ("http://x", "is a URL"),
    ("git+https://github.com/x/y", "is a URL"),
    ("./local", "is a path"),
    ("/opt/pkg", "is a path"),
    ("pkg/sub", "is a path"),
    ("pkg @ file:pkg", "is a direct reference"),
    ("six --index-url=evil", "carries a pip option"),
    ("pkg.whl", "looks like an archive file name"),
    ("${HOME}", "is not a plain requirement specifier"),
    ("~/pkg", "is a path"),
    ("pkg\\sub", "is a path"),
    ("six -e .", "carries a pip option"),
    ("six.zip", "looks like an archive file name"),
    ("six.tar.gz ; os_name == 'nt'", "looks like an archive file name"),
    ("PKG.WHL", "looks like an archive file name"),
    ("six==", "is not a plain requirement specifier"),
    ("six extra", "is not a plain requirement specifier"),
    ("~pkg", "is a path"),
    (".pkg", "is a path"),
    ("pkg.whl;os_name=='nt'", "looks like an archive file name"),
])
def test_requirements_refuse_what_points_pip_anywhere(tmp_path, line, what):
    (tmp_path / REQUIREMENTS).write_text(f"six==1.16.0\n{line}\n")
    with pytest.raises(BundleError, match=rf"requirements\.txt:2: .* {what}; a bundle's requirements may only name "
                                          r"packages \(like six==1\.16\.0\), so that it cannot point pip anywhere$"):
        requirements(tmp_path)


# --- cache ------------------------------------------------------------------------------------------


def packed(tmp_path: Path, name: str, size: int = 3000) -> Bundle:
    tree = tmp_path / "src" / name
    tree.mkdir(parents=True)
    (tree / f"{name}.py").write_bytes(os.urandom(size))  # incompressible: entries of a known size
    return pack(tree)


def entry_bytes(cache_root: Path, digest: str) -> int:
    entry = cache_root / digest.removeprefix("sha256:")
    return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())


def test_cache_put_and_get(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    assert cache.get(b.digest) is None
    code = cache.put(b.data, b.digest)
    hexd = b.digest.removeprefix("sha256:")
    assert code == tmp_path / "cache" / hexd / "code" == cache.path(b.digest)
    assert (code / "alpha.py").read_bytes() == (tmp_path / "src" / "alpha" / "alpha.py").read_bytes()
    assert (tmp_path / "cache" / hexd / "bundle.tgz").read_bytes() == b.data
    assert cache.get(b.digest) == code
    assert cache.put(b.data, b.digest) == code  # already there: unchanged
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [hexd]


def test_cache_put_verifies(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    other = "sha256:" + "1" * 64
    with pytest.raises(BundleError, match="bundle digest mismatch"):
        cache.put(b.data, other)
    assert cache.get(other) is None


def test_cache_detects_a_tampered_archive(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    code = cache.put(b.data, b.digest)
    archive = code.parent / "bundle.tgz"
    tampered = b.data[:-1] + bytes([b.data[-1] ^ 1])
    archive.write_bytes(tampered)
    with pytest.raises(BundleError) as err:
        cache.get(b.digest)
    assert str(err.value) == (f"cached bundle {b.digest} was tampered with or is corrupt: its bundle.tgz hashes to "
                              f"{digest_of(tampered)}; the entry was removed")
    assert not code.parent.exists()
    assert cache.get(b.digest) is None
    assert cache.put(b.data, b.digest) == code  # stored afresh
    assert cache.get(b.digest) == code


def test_cache_evicts_the_least_recently_used(tmp_path):
    a, b, c = (packed(tmp_path, name) for name in ("alpha", "beta", "gamma"))
    measure = Cache(tmp_path / "measure")
    for x in (a, b, c):
        measure.put(x.data, x.digest)
    sizes = [entry_bytes(tmp_path / "measure", x.digest) for x in (a, b, c)]
    assert all(s > 6000 for s in sizes)  # archive and code, both counted

    cache = Cache(tmp_path / "cache", max_bytes=sum(sizes) - 1)  # room for any two, not three
    cache.put(a.data, a.digest)
    cache.put(b.data, b.digest)
    assert cache.get(a.digest) is not None  # now beta is the least recently used
    cache.put(c.data, c.digest)
    assert cache.get(b.digest) is None
    assert not (tmp_path / "cache" / b.digest.removeprefix("sha256:")).exists()
    assert cache.get(a.digest) is not None
    assert cache.get(c.digest) is not None


def test_cache_keeps_the_new_entry_even_over_budget(tmp_path):
    cache = Cache(tmp_path / "cache", max_bytes=10)
    a, b = packed(tmp_path, "alpha"), packed(tmp_path, "beta")
    cache.put(a.data, a.digest)
    code = cache.put(b.data, b.digest)
    assert (code / "beta.py").is_file()
    assert cache.get(a.digest) is None


@pytest.mark.parametrize("bad", [
    "md5:" + "0" * 32, "sha256:" + "0" * 63, "sha256:" + "A" * 64, "sha256:../../etc", "0" * 64,
    "sha256:" + "0" * 64 + "/x",
])
def test_cache_refuses_a_malformed_digest(tmp_path, bad):
    cache = Cache(tmp_path / "cache")
    for call in (cache.path, cache.get, lambda d: cache.put(b"", d)):
        with pytest.raises(BundleError, match=r"not a bundle digest"):
            call(bad)
    assert not (tmp_path / "cache").exists()


def test_eviction_goes_on_until_the_cache_is_within_budget(tmp_path):
    a, b, c = (packed(tmp_path, name) for name in ("alpha", "beta", "gamma"))
    big = packed(tmp_path, "delta", size=9000)
    measure = Cache(tmp_path / "measure")
    for x in (a, b, c, big):
        measure.put(x.data, x.digest)
    size = {x.digest: entry_bytes(tmp_path / "measure", x.digest) for x in (a, b, c, big)}
    assert size[big.digest] > size[a.digest] + size[b.digest]
    # room for a, b and c, or for c and the big one: when the big one comes, the two least recently
    # used (a, b) must both go
    budget = size[c.digest] + size[big.digest] + 10
    assert size[a.digest] + size[b.digest] + size[c.digest] <= budget
    assert budget < size[b.digest] + size[c.digest] + size[big.digest]
    cache = Cache(tmp_path / "cache", max_bytes=budget)
    for x in (a, b, c):
        cache.put(x.data, x.digest)
    cache.put(big.data, big.digest)
    assert [cache.get(x.digest) is not None for x in (a, b, c, big)] == [False, False, True, True]


def test_a_cache_exactly_at_its_budget_evicts_nothing(tmp_path):
    a, b = packed(tmp_path, "alpha"), packed(tmp_path, "beta")
    measure = Cache(tmp_path / "measure")
    for x in (a, b):
        measure.put(x.data, x.digest)
    exact = entry_bytes(tmp_path / "measure", a.digest) + entry_bytes(tmp_path / "measure", b.digest)
    cache = Cache(tmp_path / "cache", max_bytes=exact)
    cache.put(a.data, a.digest)
    cache.put(b.data, b.digest)
    assert cache.get(a.digest) is not None and cache.get(b.digest) is not None
    smaller = Cache(tmp_path / "cache", max_bytes=exact - 1)
    smaller.put(b.data, b.digest)  # already there: still evicts down to the budget, keeping b
    assert smaller.get(a.digest) is None and smaller.get(b.digest) is not None


def test_eviction_leaves_what_is_not_a_cache_entry_alone(tmp_path):
    cache = Cache(tmp_path / "cache", max_bytes=10)
    root = tmp_path / "cache"
    root.mkdir()
    strays = [root / ".0123456789abcdef.storing-x", root / "notes", root / ("f" * 63), root / ("A" * 64)]
    for stray in strays:
        stray.mkdir()
        (stray / "big").write_bytes(b"x" * 5000)
    a, b = packed(tmp_path, "alpha"), packed(tmp_path, "beta")
    cache.put(a.data, a.digest)
    cache.put(b.data, b.digest)
    assert all((stray / "big").is_file() for stray in strays)
    assert cache.get(a.digest) is None and cache.get(b.digest) is not None


def test_an_entry_without_a_use_file_is_ordered_by_its_own_time(tmp_path):
    a, b, c = (packed(tmp_path, name) for name in ("alpha", "beta", "gamma"))
    measure = Cache(tmp_path / "measure")
    for x in (a, b, c):
        measure.put(x.data, x.digest)
    two = max(entry_bytes(tmp_path / "measure", x.digest) for x in (a, b, c)) * 2
    cache = Cache(tmp_path / "cache", max_bytes=two)
    cache.put(a.data, a.digest)
    cache.put(b.data, b.digest)
    entry_a = tmp_path / "cache" / a.digest.removeprefix("sha256:")
    (entry_a / "used").unlink()  # (an entry of an older release, or one whose use file was lost)
    os.utime(entry_a, ns=(time.time_ns() + 10**12, time.time_ns() + 10**12))  # newer than b's use
    cache.put(c.data, c.digest)
    assert cache.get(a.digest) is not None and cache.get(b.digest) is None


def test_the_cache_unpacks_within_its_bundle_limit(tmp_path):
    tree = tmp_path / "src" / "roomy"
    tree.mkdir(parents=True)
    (tree / "zeros.bin").write_bytes(b"\0" * 50_000)  # compresses to little: only unpacking sees the size
    b = pack(tree)
    assert b.size < 1000
    assert Cache(tmp_path / "default").bundle_limit == MAX_BUNDLE_BYTES
    tight = Cache(tmp_path / "tight", bundle_limit=40_000)  # the config's max_bundle_bytes
    with pytest.raises(BundleError, match=r"'zeros\.bin' would take the bundle past the limit of 0\.0 MB \(40000"):
        tight.put(b.data, b.digest)
    assert tight.get(b.digest) is None
    assert [p.name for p in (tmp_path / "tight").iterdir()] == []  # no entry, no temporary directory
    assert (Cache(tmp_path / "roomy", bundle_limit=50_000).put(b.data, b.digest) / "zeros.bin").stat().st_size == 50_000


def test_no_cache_path_is_writable_by_others_whatever_the_umask(tmp_path):
    tree = make_tree(tmp_path / "tree")
    b = pack(tree)
    old = os.umask(0)
    try:
        code = Cache(tmp_path / "cache").put(b.data, b.digest)
    finally:
        os.umask(old)
    entry = code.parent
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "cache", entry, code)} == {0o755}
    modes = {p.relative_to(code).as_posix(): p.stat().st_mode & 0o777 for p in code.rglob("*")}
    assert modes == {"bin": 0o755, "bin/run.sh": 0o755, "shop": 0o755, "shop/__init__.py": 0o644,
                     "shop/data": 0o755, "shop/data/prices.json": 0o644, "shop/orders": 0o755,
                     "shop/orders/__init__.py": 0o644, "shop/orders/actor.py": 0o644}
    assert all(not p.stat().st_mode & 0o022 for p in entry.rglob("*")), "writable by group or others"


def test_a_leftover_of_an_interrupted_put_is_replaced(tmp_path):
    b = packed(tmp_path, "alpha")
    entry = tmp_path / "cache" / b.digest.removeprefix("sha256:")
    entry.mkdir(parents=True)
    (entry / "bundle.tgz").write_bytes(b.data)  # the archive, but no code: an interrupted put
    (entry / "junk").write_text("left over")
    cache = Cache(tmp_path / "cache")
    assert cache.get(b.digest) is None
    code = cache.put(b.data, b.digest)
    assert sorted(p.name for p in entry.iterdir()) == ["bundle.tgz", "code", "used"]
    assert (code / "alpha.py").is_file()


def test_a_put_racing_another_process_keeps_theirs(tmp_path, monkeypatch):
    b = packed(tmp_path, "alpha")
    cache = Cache(tmp_path / "cache")
    real_rename = os.rename

    def racing_rename(src, dst):
        if Path(dst).name == b.digest.removeprefix("sha256:"):
            (Path(dst) / "code").mkdir(parents=True)  # another process stored the same digest first
            (Path(dst) / "code" / "theirs").write_text("first")
        real_rename(src, dst)

    monkeypatch.setattr(bundle_module.os, "rename", racing_rename)
    code = cache.put(b.data, b.digest)
    assert files_of(code) == {"theirs": b"first"}
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [b.digest.removeprefix("sha256:")]


# --- pack: what the walk refuses, and files that change under it -------------------------------------


def special(path: Path, kind: str) -> None:
    """Make a special file of ``kind`` at ``path`` (a device needs CAP_MKNOD: root here and on CI)."""
    if kind == "a socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
        return
    mode = {"a character device": stat.S_IFCHR, "a block device": stat.S_IFBLK}[kind]
    try:
        os.mknod(path, mode | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device file needs CAP_MKNOD")


@pytest.mark.parametrize("kind", ["a socket", "a character device", "a block device"])
def test_sockets_and_devices_are_refused(tmp_path, kind):
    tree = make_tree(tmp_path / "t")
    special(tree / "shop" / "odd", kind)
    with pytest.raises(BundleError, match=rf"odd is {kind}: only regular files and directories can be deployed$"):
        pack(tree)


def test_names_that_cannot_be_deployed_are_refused(tmp_path):
    tree = make_tree(tmp_path / "t")
    (tree / "shop" / "a\\b.py").write_text("")
    with pytest.raises(BundleError, match=r"a\\b\.py: a file name with a backslash cannot be deployed$"):
        pack(tree)
    (tree / "shop" / "a\\b.py").unlink()
    os.close(os.open(os.fsencode(tree / "shop") + b"/\xff.py", os.O_CREAT | os.O_WRONLY, 0o644))
    with pytest.raises(BundleError, match=r": the file name is not valid UTF-8$"):
        pack(tree)


def test_a_directory_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t")
    real_scandir = os.scandir

    def failing(path):
        if Path(path).name == "orders":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(bundle_module.os, "scandir", failing)
    with pytest.raises(BundleError, match=r"^cannot read directory .*/shop/orders: Permission denied$"):
        pack(tree)


def after_the_walk(monkeypatch, change) -> None:
    """Run ``change`` between pack's walk of the tree and its reading of the files."""
    real_walk = bundle_module._walk

    def walk_then_change(root, limit):
        found = real_walk(root, limit)
        change()
        return found

    monkeypatch.setattr(bundle_module, "_walk", walk_then_change)


def test_a_file_swapped_for_a_fifo_or_a_link_while_packing_is_refused(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t")
    target = tree / "shop" / "orders" / "actor.py"

    def to_fifo():
        target.unlink()
        os.mkfifo(target)

    after_the_walk(monkeypatch, to_fifo)
    with pytest.raises(BundleError, match=r"actor\.py changed while packing: it is no longer a regular file$"):
        pack(tree)
    target.unlink()
    target.write_text("x")

    def to_link():
        target.unlink()
        target.symlink_to(tree / "shop" / "__init__.py")

    after_the_walk(monkeypatch, to_link)
    with pytest.raises(BundleError, match=r"^cannot read .*actor\.py: Too many levels of symbolic links$"):
        pack(tree)


def test_a_file_that_grows_past_the_limit_while_packing_is_refused(tmp_path, monkeypatch):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a.bin").write_bytes(b"a" * 600)
    (tree / "b.bin").write_bytes(b"b" * 600)
    after_the_walk(monkeypatch, lambda: (tree / "b.bin").write_bytes(b"b" * 1000))
    with pytest.raises(BundleError, match=r"holds at least 0\.0 MB \(1501 bytes\) of files, over the bundle limit "
                                          r"of 0\.0 MB \(1500 bytes\) \(checked before any upload\)$"):
        pack(tree, limit=1500)
    monkeypatch.undo()
    (tree / "b.bin").write_bytes(b"b" * 600)
    assert pack(tree, limit=1200).files == 2  # exactly at the limit: fine


def test_the_limit_counts_every_file_of_the_tree(tmp_path):
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(b"a" * 500)
    (tree / "sub" / "b.bin").write_bytes(b"b" * 500)
    assert pack(tree, limit=1000).files == 2
    with pytest.raises(BundleError, match=r"at least 0\.0 MB \(1000 bytes\) of files, over the bundle limit of "
                                          r"0\.0 MB \(999 bytes\)"):
        pack(tree, limit=999)


def test_only_the_owners_execute_bit_makes_a_file_executable(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    for name, mode in (("user.sh", 0o700), ("others.sh", 0o655), ("group.sh", 0o614), ("plain.txt", 0o600)):
        (tree / name).write_text(name)
        os.chmod(tree / name, mode)
    with tarfile.open(fileobj=io.BytesIO(pack(tree).data), mode="r:gz") as tar:
        assert {i.name: i.mode for i in tar.getmembers()} == {"group.sh": 0o644, "others.sh": 0o644,
                                                             "plain.txt": 0o644, "user.sh": 0o755}


def test_a_bundle_holds_exactly_the_trees_files(tmp_path):
    tree = make_tree(tmp_path / "t")
    with tarfile.open(fileobj=io.BytesIO(pack(tree).data), mode="r:gz") as tar:
        contents = {i.name: tar.extractfile(i).read() for i in tar.getmembers()}
        assert all(i.size == len(contents[i.name]) for i in tar.getmembers())
    assert contents == files_of(tree)


# --- requirements that cannot be read -----------------------------------------------------------------


def test_requirements_that_cannot_be_read_are_named(tmp_path):
    (tmp_path / REQUIREMENTS).write_bytes(b"six==1.16.0\n\xff\xfe\n")
    with pytest.raises(BundleError, match=r"requirements\.txt is not UTF-8 text: "):
        requirements(tmp_path)
    (tmp_path / REQUIREMENTS).unlink()
    (tmp_path / REQUIREMENTS).mkdir()
    with pytest.raises(BundleError, match=r"^cannot read .*requirements\.txt: Is a directory$"):
        requirements(tmp_path)


@pytest.mark.parametrize("line", ["six", "six==1.16.0", "a.b-c_d>=1,<2", "rich[jupyter]", "x[a, b] (>=1)",
                                  "attrs ; python_version < '3.12'", "pkg===1.0+local", "z~=1.4.*",
                                  "name.tar.gz==1"])
def test_plain_specifiers_are_accepted(tmp_path, line):
    (tmp_path / REQUIREMENTS).write_text(f"{line}  # why\n")
    assert requirements(tmp_path) == [line]




# --- unpack and the cache: the rest of their refusals ------------------------------------------------------


def test_unpack_refuses_a_link_as_destination(tmp_path):
    data = pack(make_tree(tmp_path / "tree")).data
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(BundleError, match=r"cannot unpack into .*link: it exists and is not a directory$"):
        unpack(data, tmp_path / "link")
    assert list((tmp_path / "real").iterdir()) == []


def test_unpack_creates_the_destinations_parents(tmp_path):
    data = pack(make_tree(tmp_path / "tree")).data
    unpack(data, tmp_path / "a" / "b" / "code")
    assert files_of(tmp_path / "a" / "b" / "code") == files_of(tmp_path / "tree")


def test_an_entry_whose_archive_is_gone_is_not_cached(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    code = cache.put(b.data, b.digest)
    (code.parent / "bundle.tgz").unlink()
    assert cache.get(b.digest) is None
    assert cache.put(b.data, b.digest) == code and cache.get(b.digest) == code


# --- what the mutation run found untested ------------------------------------------------------------------


def test_a_pycache_directory_is_skipped_whatever_it_holds_and_only_directories_are(tmp_path):
    tree = make_tree(tmp_path / "t")
    plain = pack(tree)
    (tree / "shop" / "__pycache__").mkdir()
    (tree / "shop" / "__pycache__" / "notes.txt").write_text("not bytecode, still skipped")
    assert pack(tree).digest == plain.digest
    (tree / "lib.pyc").mkdir()  # a directory named like bytecode is a directory
    (tree / "lib.pyc" / "mod.py").write_text("x = 1\n")
    (tree / "__pycache__").write_text("a file named like the directory is a file")
    with tarfile.open(fileobj=io.BytesIO(pack(tree).data), mode="r:gz") as tar:
        names = tar.getnames()
    assert "lib.pyc/mod.py" in names and "__pycache__" in names


def test_a_file_that_vanishes_during_the_walk_is_named(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t")
    real_scandir = os.scandir

    class Vanished:
        def __init__(self, entry):
            self.entry, self.name, self.path = entry, entry.name, entry.path

        def stat(self, follow_symlinks=True):
            raise FileNotFoundError(2, "No such file or directory")

    class Listing:
        def __init__(self, path):
            self.inner = real_scandir(path)

        def __enter__(self):
            return [Vanished(e) if e.name == "actor.py" else e for e in self.inner.__enter__()]

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(bundle_module.os, "scandir", Listing)
    with pytest.raises(BundleError, match=r"^cannot read .*/shop/orders/actor\.py: No such file or directory$"):
        pack(tree)


def test_names_beyond_ascii_survive_the_round_trip(tmp_path):
    tree = tmp_path / "t"
    (tree / "données").mkdir(parents=True)
    (tree / "données" / "prix-€.json").write_text("{}")
    (tree / "日本.py").write_text("x = 1\n")
    out = tmp_path / "out"
    unpack(pack(tree).data, out)
    assert files_of(out) == files_of(tree) == {"données/prix-€.json": b"{}", "日本.py": b"x = 1\n"}


def test_an_entry_name_that_is_not_utf8_is_refused(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("caf\xe9.py")  # written as the latin-1 byte 0xe9
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert_refused(tmp_path, gzip.compress(raw.getvalue()),
                   r"^bundle entry 'caf\\udce9\.py': the name is not valid UTF-8$")


def sparse_member(name: str, data: bytes, real_size: int) -> bytes:
    """A tar stream of one GNU sparse member (tarfile can read them, not write them)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))

    def octal(n: int) -> bytes:
        return b"%011o\0" % n

    header[386:398], header[398:410] = octal(0), octal(len(data))  # one region: the data, at offset 0
    header[483:495] = octal(real_size)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    padding = b"\0" * (-len(data) % 512)
    return bytes(header) + data + padding + b"\0" * 1024


def test_unpack_refuses_a_sparse_member(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(sparse_member("holes.bin", b"abc", 10**9))) as tar:
        assert tar.getmembers()[0].sparse  # (a sparse member as tarfile reads it)
    assert_refused(tmp_path, gzip.compress(sparse_member("holes.bin", b"abc", 10**9)),
                   r"^bundle entry 'holes\.bin' is a sparse file: only plain files and directories$")


def test_unpack_refuses_a_file_without_a_name(tmp_path):
    assert_refused(tmp_path, tgz(member(".", b"x")), r"^bundle entry '\.' has an empty name$")
    assert_refused(tmp_path, tgz(member("./", b"x")), r"has an empty name$")


def test_unpack_makes_the_directories_an_archive_lists(tmp_path):
    data = tgz(member("pkg", None, tarfile.DIRTYPE), member("pkg/empty", None, tarfile.DIRTYPE),
               member("pkg", None, tarfile.DIRTYPE), member("pkg/a.py", b"A"), member("top", None, tarfile.DIRTYPE))
    unpack(data, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == \
        ["pkg", "pkg/a.py", "pkg/empty", "top"]
    assert {(tmp_path / "out" / d).stat().st_mode & 0o777 for d in ("pkg", "pkg/empty", "top")} == {0o755}


def test_a_bundle_whose_tar_stream_is_bigger_than_a_megabyte_unpacks(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "noise.bin").write_bytes(os.urandom(1_400_000))
    b = pack(tree)
    unpack(b.data, tmp_path / "out", limit=1_500_000)
    assert (tmp_path / "out" / "noise.bin").read_bytes() == (tree / "noise.bin").read_bytes()


def test_an_archive_exactly_at_the_limit_unpacks(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "noise.bin").write_bytes(os.urandom(5000))
    data = pack(tree).data
    unpack(data, tmp_path / "out", limit=len(data))
    assert_refused(tmp_path, data, r"^bundle is 0\.0 MB \(\d+ bytes\), over the bundle limit", limit=len(data) - 1)


def test_the_decompressed_stream_is_read_in_bounded_chunks_and_capped():
    stream = gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(b"z" * (3 * bundle_module._CHUNK))), mode="rb")
    capped = bundle_module._Capped(stream, cap=2 * bundle_module._CHUNK + 10, limit=7)
    assert capped.read(0) == b"" and capped.tell() == 0
    assert capped.read(5) == b"zzzzz" and capped.tell() == 5
    assert len(capped.read()) == bundle_module._CHUNK  # never the whole stream at once
    assert len(capped.read(-1)) == bundle_module._CHUNK
    assert capped.tell() == 2 * bundle_module._CHUNK + 5
    assert len(capped.read(5)) == 5  # exactly at the cap: still fine
    with pytest.raises(BundleError, match=r"^bundle expands to more than 2\.0 MB \(2097162 bytes\) of tar stream, "
                                          r"over what the limit of 0\.0 MB \(7 bytes\) allows \(a gzip bomb\?\)$"):
        capped.read(1)
    with pytest.raises(io.UnsupportedOperation, match="^seek$"):
        capped.seek(0)
    with pytest.raises(io.UnsupportedOperation, match="^write$"):
        capped.write(b"x")
    capped.close()
    assert stream.closed
    fresh = bundle_module._Capped(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(b"ab")), mode="rb"), cap=2, limit=1)
    assert fresh.read(None) == b"ab" and fresh.tell() == 2


def test_unpack_fails_when_a_file_takes_the_destination_meanwhile(tmp_path, monkeypatch):
    data = pack(make_tree(tmp_path / "tree")).data
    dest = tmp_path / "area" / "code"
    real_rename = os.rename

    def racing_rename(src, dst):
        Path(dst).write_text("not a directory")
        real_rename(src, dst)

    monkeypatch.setattr(bundle_module.os, "rename", racing_rename)
    with pytest.raises(NotADirectoryError):
        unpack(data, dest)
    assert [p.name for p in dest.parent.iterdir()] == ["code"] and dest.read_text() == "not a directory"


@pytest.mark.parametrize("bad", [None, 5, b"sha256:" + b"0" * 64])
def test_a_digest_that_is_not_a_string_is_refused(tmp_path, bad):
    with pytest.raises(BundleError, match=r"^not a bundle digest: .* \(expected sha256:<64 lowercase hex digits>\)$"):
        Cache(tmp_path / "cache").path(bad)


def test_every_file_of_an_entry_has_its_mode(tmp_path):
    b = packed(tmp_path, "alpha")
    old = os.umask(0)
    try:
        code = Cache(tmp_path / "cache").put(b.data, b.digest)
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in code.parent.iterdir()} == {"bundle.tgz": 0o644, "used": 0o644,
                                                                                  "code": 0o755}


def test_a_cache_root_is_made_with_its_parents(tmp_path):
    b = packed(tmp_path, "alpha")
    assert (Cache(tmp_path / "a" / "b" / "cache").put(b.data, b.digest) / "alpha.py").is_file()


def test_a_cached_bundle_is_not_unpacked_again(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    code = cache.put(b.data, b.digest)
    (code / "marker").write_text("still the same directory")
    assert cache.put(b.data, b.digest) == code
    assert (code / "marker").read_text() == "still the same directory"


def test_a_put_over_a_tampered_entry_stores_it_afresh(tmp_path):
    cache = Cache(tmp_path / "cache")
    b = packed(tmp_path, "alpha")
    code = cache.put(b.data, b.digest)
    (code.parent / "bundle.tgz").write_bytes(b"tampered")
    (code / "alpha.py").write_text("planted")
    assert cache.put(b.data, b.digest) == code
    assert (code / "alpha.py").read_bytes() == (tmp_path / "src" / "alpha" / "alpha.py").read_bytes()
    assert (code.parent / "bundle.tgz").read_bytes() == b.data


def test_a_bundle_put_again_is_kept_even_over_budget(tmp_path):
    cache = Cache(tmp_path / "cache", max_bytes=10)
    b = packed(tmp_path, "alpha")
    code = cache.put(b.data, b.digest)
    assert cache.put(b.data, b.digest) == code and (code / "alpha.py").is_file()


@pytest.mark.parametrize("recent", ["alpha", "beta"])
def test_the_least_recently_used_goes_whatever_the_digests_order(tmp_path, recent):
    bundles = {name: packed(tmp_path, name) for name in ("alpha", "beta", "gamma")}
    measure = Cache(tmp_path / "measure")
    for x in bundles.values():
        measure.put(x.data, x.digest)
    sizes = [entry_bytes(tmp_path / "measure", x.digest) for x in bundles.values()]
    cache = Cache(tmp_path / "cache", max_bytes=sum(sizes) - 1)
    cache.put(bundles["alpha"].data, bundles["alpha"].digest)
    cache.put(bundles["beta"].data, bundles["beta"].digest)
    assert cache.get(bundles[recent].digest) is not None
    cache.put(bundles["gamma"].data, bundles["gamma"].digest)
    old = "beta" if recent == "alpha" else "alpha"
    assert cache.get(bundles[old].digest) is None and cache.get(bundles[recent].digest) is not None


def test_a_put_stores_through_a_hidden_sibling(tmp_path, monkeypatch):
    b = packed(tmp_path, "alpha")
    hexd = b.digest.removeprefix("sha256:")
    renamed = []
    real_rename = os.rename

    def watching_rename(src, dst):
        renamed.append((Path(src), Path(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(bundle_module.os, "rename", watching_rename)
    Cache(tmp_path / "cache").put(b.data, b.digest)
    [(src, dst)] = [(s, d) for s, d in renamed if d.name == hexd]
    assert src.parent == dst.parent == tmp_path / "cache" and src.name.startswith(f".{hexd[:16]}.storing-")


def test_the_files_of_a_bundle_are_read_back_as_they_were_packed(tmp_path):
    tree = make_tree(tmp_path / "t")
    assert bundle_module.files(pack(tree).data) == files_of(tree)
    with pytest.raises(BundleError, match=r"^not a beach bundle: "):
        bundle_module.files(b"not a bundle")
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    (noisy / "zeros.bin").write_bytes(b"\0" * 50_000)
    with pytest.raises(BundleError, match=r"'zeros\.bin' would take the bundle past the limit of 0\.0 MB \(40000"):
        bundle_module.files(pack(noisy).data, limit=40_000)


def test_an_archive_broken_inside_a_header_or_a_file_is_refused_saying_why(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("a.py", "é.py"):  # the second has a pax header, then its own
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    broken = bytearray(raw.getvalue())
    broken[2048 + 148] ^= 1  # the checksum of the header after the pax header
    assert_refused(tmp_path, gzip.compress(bytes(broken)), r"^not a beach bundle: bad checksum$")
    tree = tmp_path / "noise"
    tree.mkdir()
    (tree / "n.bin").write_bytes(os.urandom(100_000))
    data = pack(tree).data
    assert_refused(tmp_path, data[: len(data) // 2], r"^not a beach bundle: Compressed file ended before the "
                                                     r"end-of-stream marker was reached$")
    # (an error with no words of its own is named by its type)
    assert str(bundle_module._corrupt(EOFError())) == "not a beach bundle: EOFError"
