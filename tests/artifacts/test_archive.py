"""zip_directory: the same tree gives the same bytes, and what it stores unpacks safely."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from ember.artifacts import ArtifactLimits, FilesystemArtifactStore, zip_directory


def make_tree(root: Path) -> Path:
    files = {
        "main.py": "def handler(event, context):\n    return event\n",
        "pkg/__init__.py": "",
        "pkg/util.py": "X = 1\n",
        "bin/run.sh": "#!/bin/sh\necho hi\n",
        "empty/.keep": "",
        "app.log": "noise\n",
        "docs/readme.md": "# docs\n",
        "docs/keep.txt": "kept\n",
        "build/out.bin": "junk",
        "__pycache__/main.cpython-311.pyc": "",
        "pkg/__pycache__/util.cpython-311.pyc": "",
        "stray.pyc": "",
        ".git/config": "[core]\n",
        ".venv/bin/python": "",
        ".ember/state.json": "{}",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "bin" / "run.sh").chmod(0o755)
    return root


def names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "a")
    first = zip_directory(tree)
    os.utime(tree / "main.py", (1_000_000_000, 1_000_000_000))
    (tree / "pkg" / "util.py").chmod(0o600)  # only the exec bit counts
    assert sha(zip_directory(tree)) == sha(first)
    copy = tmp_path / "b"
    shutil.copytree(tree, copy)
    assert sha(zip_directory(copy)) == sha(first)
    (copy / "main.py").write_text("changed\n")
    assert sha(zip_directory(copy)) != sha(first)


def test_entries_are_sorted_with_fixed_timestamps(tmp_path: Path) -> None:
    data = zip_directory(make_tree(tmp_path))
    assert names(data) == sorted(names(data))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_default_and_given_excludes_are_skipped(tmp_path: Path) -> None:
    data = zip_directory(make_tree(tmp_path), exclude=["*.log", "docs/*.md", "build/"])
    assert names(data) == [
        "bin/",
        "bin/run.sh",
        "docs/",
        "docs/keep.txt",
        "empty/",
        "empty/.keep",
        "main.py",
        "pkg/",
        "pkg/__init__.py",
        "pkg/util.py",
    ]


def test_the_executable_bit_is_kept(tmp_path: Path) -> None:
    data = zip_directory(make_tree(tmp_path))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["bin/run.sh"] == stat.S_IFREG | 0o755
    assert modes["main.py"] == stat.S_IFREG | 0o644
    assert modes["pkg/"] == stat.S_IFDIR | 0o755
    store = FilesystemArtifactStore(tmp_path / "store")
    code = store.path(store.put(data).sha256)
    assert stat.S_IMODE((code / "bin" / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((code / "main.py").stat().st_mode) == 0o444


def test_a_zipped_tree_round_trips_through_the_store(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    store = FilesystemArtifactStore(tmp_path / "store", ArtifactLimits(max_entries=100))
    code = store.path(store.put(zip_directory(tree)).sha256)
    assert (code / "pkg" / "util.py").read_text() == "X = 1\n"
    assert (code / "empty").is_dir()
    assert not (code / "__pycache__").exists()


def test_symlinks_inside_are_kept_as_symlinks(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    (tree / "lib").symlink_to("pkg")
    (tree / "pkg" / "alias.py").symlink_to("util.py")
    (tree / "abs.py").symlink_to(tree / "pkg" / "util.py")
    (tree / "pkg" / "roundabout.py").symlink_to("../../src/main.py")
    data = zip_directory(tree)
    assert "lib" in names(data) and "lib/util.py" not in names(data)
    store = FilesystemArtifactStore(tmp_path / "store")
    code = store.path(store.put(data).sha256)
    assert os.readlink(code / "lib") == "pkg"
    assert os.readlink(code / "pkg" / "alias.py") == "util.py"
    # Absolute, or out and back in: rewritten relative so the unpacked tree still works.
    assert os.readlink(code / "abs.py") == "pkg/util.py"
    assert os.readlink(code / "pkg" / "roundabout.py") == "../main.py"
    assert (code / "lib" / "util.py").read_text() == "X = 1\n"


@pytest.mark.parametrize("target", ["../../outside.py", "/etc/passwd"])
def test_symlinks_pointing_outside_are_refused(tmp_path: Path, target: str) -> None:
    (tmp_path / "outside.py").write_text("secret\n")
    tree = make_tree(tmp_path / "src")
    (tree / "pkg" / "leak.py").symlink_to(target)
    with pytest.raises(ValueError, match=r"symlink 'pkg/leak.py' points to .* outside"):
        zip_directory(tree)


def test_an_excluded_symlink_pointing_outside_is_skipped(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    (tree / ".venv" / "lib").symlink_to("/usr/lib")
    assert ".venv/lib" not in names(zip_directory(tree))


def test_only_directories_can_be_zipped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        zip_directory(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        zip_directory(tmp_path / "file")


def test_fifos_are_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    os.mkfifo(tree / "pipe")
    with pytest.raises(ValueError, match="'pipe'"):
        zip_directory(tree)
