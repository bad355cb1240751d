"""Unsafe archives are refused before anything is written; safe ones unpack as they say."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ember.artifacts import ArtifactLimits, FilesystemArtifactStore, open_archive, unzip
from ember.errors import InvalidCode, PayloadTooLarge

SMALL = ArtifactLimits(max_zip_bytes=64 * 1024, max_entries=20, max_unpacked_bytes=4096)

Item = tuple[str | zipfile.ZipInfo, bytes]


def make_zip(*items: Item) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def link(name: str, target: str) -> Item:
    return special(name, stat.S_IFLNK | 0o777), target.encode()


def patch_central(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a field of the first central directory record (what zipfile trusts)."""
    at = data.index(b"PK\x01\x02") + offset
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt) :]


def assert_refused(
    tmp_path: Path, data: bytes, entry: str | None, reason: str, limits: ArtifactLimits = SMALL
) -> dict[str, Any]:
    root = tmp_path / "store"
    with pytest.raises(InvalidCode) as caught:
        FilesystemArtifactStore(root, limits).put(data)
    error = caught.value
    assert error.code == "InvalidCode"
    assert reason in error.details["reason"]
    if entry is not None:
        assert error.details["entry"] == entry
        assert repr(entry) in error.message
    assert not root.exists() or list(root.rglob("*")) == [], "a refused put wrote something"
    return error.details


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "C:/windows/evil.py", "c:evil.py", "C:\\evil.py", "\\evil.py", "\\\\host\\x"],
)
def test_absolute_names_are_refused(tmp_path: Path, name: str) -> None:
    assert_refused(tmp_path, make_zip(("ok.py", b""), (name, b"x")), name, "absolute")


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "a/..", "a\\..\\..\\evil.py"])
def test_dot_dot_components_are_refused(tmp_path: Path, name: str) -> None:
    assert_refused(tmp_path, make_zip((name, b"x")), name, "'..'")


def test_more_entries_than_the_limit_are_refused(tmp_path: Path) -> None:
    data = make_zip(*((f"f{i}", b"") for i in range(10_001)))
    details = assert_refused(tmp_path, data, "f10000", "10001 entries", ArtifactLimits())
    assert details["limit"] == 10_000


def test_a_declared_total_over_the_limit_is_refused(tmp_path: Path) -> None:
    data = make_zip(("a.bin", b"a" * 3000), ("b.bin", b"b" * 2000))
    assert_refused(tmp_path, data, "b.bin", "4096-byte limit")


def test_a_zip_bomb_is_refused_by_its_ratio_with_default_limits(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", b"def handler(event, context): ...\n")
        info = zipfile.ZipInfo("bomb.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        # 64 MiB of zeros deflate to ~64 KB; streamed so the test stays light.
        with archive.open(info, "w") as out:
            for _ in range(64):
                out.write(bytes(1024 * 1024))
    details = assert_refused(tmp_path, buffer.getvalue(), "bomb.bin", "zip bomb", ArtifactLimits())
    assert details["ratio"] > 200


def test_real_bytes_over_the_limit_abort_and_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # zipfile itself never reads past a declared size, so the lie is made where the
    # checks read it: extraction must still count what it really writes.
    monkeypatch.setattr(unzip, "_declared_size", lambda info: 0)
    data = make_zip(("small.txt", b"x" * 100), ("big.bin", os.urandom(5000)))
    assert_refused(tmp_path, data, "big.bin", "unpacking passes the 4096-byte limit")


def test_a_corrupt_entry_aborts_extraction_and_cleans_up(tmp_path: Path) -> None:
    data = make_zip(("main.py", b"print('hello')\n"))
    assert_refused(tmp_path, patch_central(data, 16, "<I", 0xDEADBEEF), "main.py", "corrupt")


def test_symlinks_inside_the_archive_are_created_as_symlinks(tmp_path: Path) -> None:
    data = make_zip(
        ("pkg/mod.py", b"X = 1\n"),
        link("lib", "pkg"),
        link("pkg/alias.py", "mod.py"),
        link("pkg/deep/up", "../.."),
        link("dangling", "missing/file"),
    )
    store = FilesystemArtifactStore(tmp_path, SMALL)
    code = store.path(store.put(data).sha256)
    assert os.readlink(code / "lib") == "pkg"
    assert (code / "lib" / "mod.py").read_bytes() == b"X = 1\n"
    assert (code / "pkg" / "alias.py").read_bytes() == b"X = 1\n"
    assert (code / "pkg" / "deep" / "up").resolve() == code.resolve()
    assert (code / "dangling").is_symlink()


@pytest.mark.parametrize(
    ("items", "entry", "reason"),
    [
        ([link("l", "../outside")], "l", "outside the archive"),
        ([link("a/b/l", "../../../x")], "a/b/l", "outside the archive"),
        ([link("l", "/etc/passwd")], "l", "absolute"),
        ([link("l", "C:/x")], "l", "absolute"),
        ([link("l", "..\\x")], "l", "backslash"),
        ([link("l", "")], "l", "empty"),
        ([link("l", "l")], "l", "loops"),
        # Lexically x stays inside, but through 'up' it leaves the root.
        ([link("a/b/up", "../.."), link("x", "a/b/up/../..")], "x", "outside the archive"),
    ],
)
def test_symlinks_leaving_the_archive_are_refused(
    tmp_path: Path, items: list[Item], entry: str, reason: str
) -> None:
    assert_refused(tmp_path, make_zip(("main.py", b""), *items), entry, reason)


def test_entries_below_a_symlink_are_refused(tmp_path: Path) -> None:
    data = make_zip(("pkg/mod.py", b""), link("l", "pkg"), ("l/evil.py", b"x"))
    assert_refused(tmp_path, data, "l/evil.py", "is a symlink")


def test_entries_below_a_file_are_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, make_zip(("a", b""), ("a/b", b"")), "a/b", "is a file")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = make_zip(("main.py", b"a"), ("main.py", b"b"))
    assert_refused(tmp_path, data, "main.py", "duplicate")


def test_names_equal_once_normalized_are_duplicates(tmp_path: Path) -> None:
    assert_refused(tmp_path, make_zip(("a/b.py", b""), ("a//./b.py", b"")), "a//./b.py", "dup")


def test_encrypted_entries_are_refused(tmp_path: Path) -> None:
    data = patch_central(make_zip(("main.py", b"x")), 8, "<H", 0x1)
    assert_refused(tmp_path, data, "main.py", "encrypted")


def test_unknown_compression_methods_are_refused(tmp_path: Path) -> None:
    data = patch_central(make_zip(("main.py", b"x")), 10, "<H", 99)
    assert_refused(tmp_path, data, "main.py", "compression method 99")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (stat.S_IFIFO | 0o644, "fifo"),
        (stat.S_IFCHR | 0o644, "character device"),
        (stat.S_IFBLK | 0o644, "block device"),
        (stat.S_IFSOCK | 0o644, "socket"),
    ],
)
def test_device_and_fifo_entries_are_refused(tmp_path: Path, mode: int, reason: str) -> None:
    data = make_zip(("main.py", b""), (special("dev", mode), b""))
    assert_refused(tmp_path, data, "dev", reason)


@pytest.mark.parametrize("data", [b"", b"hello, not a zip", b"PK\x03\x04" + b"\0" * 40])
def test_bytes_that_are_not_a_zip_are_refused(tmp_path: Path, data: bytes) -> None:
    details = assert_refused(tmp_path, data, None, "not a zip archive")
    assert "entry" not in details


@pytest.mark.parametrize("items", [(), (("empty/", b""),), (("a/", b""), ("a/b/", b""))])
def test_an_archive_without_files_is_refused(tmp_path: Path, items: tuple[Item, ...]) -> None:
    assert_refused(tmp_path, make_zip(*items), None, "holds no files")


def test_an_archive_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FilesystemArtifactStore(root, ArtifactLimits(max_zip_bytes=100))
    with pytest.raises(PayloadTooLarge) as caught:
        store.put(b"\0" * 101)
    assert caught.value.details == {"size": 101, "limit": 100}
    assert "101" in caught.value.message and "100" in caught.value.message
    assert not root.exists()


def test_names_are_normalized(tmp_path: Path) -> None:
    data = make_zip(("./pkg//a.py", b"a"), ("pkg\\b.py", b"b"), ("./", b""), ("pkg/", b""))
    with open_archive(data, SMALL) as archive:
        assert [(e.name, e.kind) for e in archive.entries] == [
            ("pkg/a.py", "file"),
            ("pkg/b.py", "file"),
            ("pkg", "dir"),
        ]
        archive.extract_to(tmp_path)
    assert (tmp_path / "pkg" / "b.py").read_bytes() == b"b"


def test_checking_writes_nothing_and_reports_entries(tmp_path: Path) -> None:
    exe = special("run.sh", stat.S_IFREG | 0o755)
    with open_archive(make_zip(("main.py", b"x"), (exe, b"#!/bin/sh\n")), SMALL) as archive:
        assert [(e.name, e.executable, e.size) for e in archive.entries] == [
            ("main.py", False, 1),
            ("run.sh", True, 10),
        ]
    assert list(tmp_path.iterdir()) == []
