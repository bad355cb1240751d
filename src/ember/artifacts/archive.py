"""Zipping a user's directory into a code archive, the same bytes for the same tree.

The SDK and the CLI call ``zip_directory`` before an upload. Artifacts are addressed by the
sha256 of the zip, so the zip must depend on the tree's content only: entries are sorted,
every timestamp is 1980-01-01 (the earliest a zip can hold), modes are reduced to 0o644 or
0o755, and nothing about the host (owner, umask, operating system) is recorded.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from io import BytesIO
from pathlib import Path
from typing import Literal

# Never part of a function's code: caches, version control, virtual environments, and the
# CLI's own state.
DEFAULT_EXCLUDES: tuple[str, ...] = ("__pycache__", ".git", "*.pyc", ".venv", ".ember")
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# The zip "made by" system: 3 is Unix, the only one whose mode bits unzip reads back.
_UNIX = 3
# The MS-DOS directory attribute, set beside the Unix mode as zip tools do.
_DOS_DIRECTORY = 0x10


@dataclass(frozen=True)
class _Item:
    arcname: str
    path: str
    kind: Literal["file", "dir", "symlink"]


def zip_directory(path: Path, exclude: Sequence[str] = ()) -> bytes:
    """Zip the tree under ``path``; the same tree always gives the same bytes.

    Args:
        path: the directory to zip; its content becomes the archive root.
        exclude: glob patterns skipped besides ``DEFAULT_EXCLUDES``. A pattern matches an
            entry's name (``*.log``, ``build``) or its path relative to ``path``
            (``docs/*.md``); an excluded directory is skipped with all it holds.

    Files keep their executable bit (stored as 0o755, others 0o644). A symlink is stored as a
    symlink when it resolves inside ``path``; an absolute target, or one leaving ``path``
    and coming back, is rewritten relative so the tree still works once unpacked elsewhere.

    Raises:
        ValueError: ``path`` is not a directory, a symlink points outside it, or it holds
            something that is neither a file, a directory nor a symlink (a fifo, a socket).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    patterns = [*DEFAULT_EXCLUDES, *(pattern.rstrip("/") for pattern in exclude)]
    real_root = os.path.realpath(root)
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for item in sorted(_walk(root, patterns), key=lambda item: item.arcname):
            if item.kind == "dir":
                _write_dir(archive, item)
            elif item.kind == "symlink":
                _write_symlink(archive, item, root, real_root)
            else:
                _write_file(archive, item)
    return buffer.getvalue()


def _walk(root: Path, patterns: Sequence[str]) -> Iterator[_Item]:
    for directory, dirnames, filenames in os.walk(root):
        relative_dir = Path(directory).relative_to(root).as_posix()
        kept_dirs = []
        for name in [*dirnames, *filenames]:
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            if _excluded(name, relative, patterns):
                continue
            full = os.path.join(directory, name)
            if os.path.islink(full):
                # os.walk lists a link to a directory among the directories but never enters
                # it; either way the link itself is what gets stored.
                yield _Item(relative, full, "symlink")
            elif os.path.isdir(full):
                kept_dirs.append(name)
                yield _Item(f"{relative}/", full, "dir")
            elif os.path.isfile(full):
                yield _Item(relative, full, "file")
            else:
                raise ValueError(f"{relative!r} in {root} is not a file, directory or symlink")
        # Pruning in place keeps os.walk out of excluded directories.
        dirnames[:] = [name for name in dirnames if name in kept_dirs]


def _excluded(name: str, relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) or fnmatchcase(relative, p) for p in patterns)


def _info(arcname: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
    info.create_system = _UNIX
    info.external_attr = mode << 16
    return info


def _write_dir(archive: zipfile.ZipFile, item: _Item) -> None:
    info = _info(item.arcname, stat.S_IFDIR | 0o755)
    info.external_attr |= _DOS_DIRECTORY
    archive.writestr(info, b"")


def _write_file(archive: zipfile.ZipFile, item: _Item) -> None:
    executable = os.stat(item.path).st_mode & 0o111
    info = _info(item.arcname, stat.S_IFREG | (0o755 if executable else 0o644))
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(item.path, "rb") as source:
        archive.writestr(info, source.read())


def _write_symlink(archive: zipfile.ZipFile, item: _Item, root: Path, real_root: str) -> None:
    target = os.readlink(item.path)
    resolved = os.path.realpath(item.path)
    if os.path.commonpath([resolved, real_root]) != real_root:
        raise ValueError(
            f"symlink {item.arcname!r} points to {target!r}, outside {root}: copy what it "
            "points to into the directory, or exclude the link"
        )
    link_dir = os.path.dirname(item.arcname)
    lexical = os.path.normpath(os.path.join(link_dir, target))
    if os.path.isabs(target) or lexical == ".." or lexical.startswith("../"):
        # Inside in fact but not on its face (absolute, or out through '..' and back in):
        # unpacking refuses such a target, and an absolute one would break elsewhere.
        target = os.path.relpath(resolved, os.path.join(real_root, link_dir))
    info = _info(item.arcname, stat.S_IFLNK | 0o777)
    archive.writestr(info, target.encode("utf-8"))
