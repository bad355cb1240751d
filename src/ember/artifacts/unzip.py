"""Safe reading of code archives: every entry is checked before a byte reaches the disk.

A code archive comes from a user, so it is read as hostile. ``open_archive`` checks the whole
archive first — size, entry count, names, types, encryption, compression ratios, declared
sizes, symlink targets — and only then does ``CheckedArchive.extract_to`` write anything.
Declared sizes can lie, so extraction also counts the bytes it really writes.

Names are read with ``\\`` as a separator too: tools on Windows write paths that way, and a
tree unpacked here may later be read by one.
"""

from __future__ import annotations

import lzma
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ember.artifacts.base import MIB, ArtifactLimits
from ember.errors import InvalidCode, PayloadTooLarge

# Only big entries are judged by their ratio: a small module of repeated lines compresses
# very well without being dangerous.
RATIO_MIN_BYTES = 1 * MIB
# PATH_MAX on Linux: a longer target could not be created anyway.
MAX_LINK_TARGET_BYTES = 4096
# Like the kernel's ELOOP: a chain of links longer than this is taken for a loop.
MAX_LINK_HOPS = 40
CHUNK_BYTES = 64 * 1024

NOT_A_ZIP = "not a zip archive"
NO_FILES = "the archive holds no files"

_DRIVE = re.compile(r"^[A-Za-z]:")
_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_TYPE_NAMES = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
# What a damaged entry raises while zipfile reads it. The archive lives in memory, so an
# OSError here is the bz2 decoder's "invalid data stream", never a disk failure.
_CORRUPT = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)

EntryKind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True)
class Entry:
    """One checked entry: its normalized relative path (``/``-separated) and what it is."""

    name: str
    kind: EntryKind
    executable: bool
    size: int
    target: str | None
    info: zipfile.ZipInfo = field(compare=False, repr=False)


class _Escape(Exception):
    """A symlink target leaves the archive root, or loops."""


def refused(entry: str | None, reason: str, **extra: Any) -> InvalidCode:
    """The InvalidCode for an unsafe archive; ``entry`` is the name as the archive spells it."""
    if entry is None:
        return InvalidCode(reason, {"reason": reason, **extra})
    return InvalidCode(f"entry {entry!r}: {reason}", {"entry": entry, "reason": reason, **extra})


def check_size(size: int, limits: ArtifactLimits) -> None:
    """Refuse a zip over ``max_zip_bytes`` before anything reads it.

    Raises:
        PayloadTooLarge: with ``size`` and ``limit`` in the message and details.
    """
    if size > limits.max_zip_bytes:
        raise PayloadTooLarge(
            f"the code archive is {size} bytes, over the {limits.max_zip_bytes}-byte limit",
            {"size": size, "limit": limits.max_zip_bytes},
        )


def open_archive(data: bytes, limits: ArtifactLimits) -> CheckedArchive:
    """Check every entry of the zip ``data``; nothing is written to disk.

    Raises:
        PayloadTooLarge: ``data`` is over ``limits.max_zip_bytes``.
        InvalidCode: ``data`` is not a zip, holds no files, or an entry is unsafe; the message
            and ``details["entry"]`` name the entry, ``details["reason"]`` says why.
    """
    check_size(len(data), limits)
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise refused(None, NOT_A_ZIP) from exc
    try:
        entries = _check_entries(archive, limits)
    except BaseException:
        archive.close()
        raise
    return CheckedArchive(archive, entries, limits)


class CheckedArchive:
    """A zip whose entries all passed ``open_archive``; use it as a context manager."""

    def __init__(
        self, archive: zipfile.ZipFile, entries: tuple[Entry, ...], limits: ArtifactLimits
    ) -> None:
        self._archive = archive
        self.entries = entries
        self._limits = limits

    def __enter__(self) -> CheckedArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._archive.close()

    def extract_to(self, dest: Path) -> None:
        """Unpack every entry under the existing empty directory ``dest``.

        Files end up 0o444 (0o555 when the archive gave them an exec bit), directories below
        ``dest`` 0o555; symlinks are created as symlinks. ``dest`` itself keeps its mode so the
        caller can still move it into place. On error ``dest`` holds a partial tree: the
        caller removes it.

        Raises:
            InvalidCode: an entry is corrupt, or the bytes really written pass
                ``max_unpacked_bytes`` (declared sizes can lie).
        """
        made: set[Path] = set()
        written = 0
        for entry in self.entries:
            parts = entry.name.split("/")
            if entry.kind == "dir":
                _make_dirs(dest, parts, made)
                continue
            _make_dirs(dest, parts[:-1], made)
            target = dest.joinpath(*parts)
            if entry.kind == "symlink":
                assert entry.target is not None
                os.symlink(entry.target, target)
            else:
                written = self._write_file(entry, target, written)
        # Sealed only now: a directory must stay writable while its entries are created.
        for directory in made:
            os.chmod(directory, 0o555)

    def _write_file(self, entry: Entry, target: Path, written: int) -> int:
        budget = self._limits.max_unpacked_bytes
        # O_EXCL and O_NOFOLLOW: never write through something already there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            try:
                source = self._archive.open(entry.info)
            except _CORRUPT as exc:
                raise refused(entry.info.filename, f"the entry is corrupt ({exc})") from exc
            with source:
                while True:
                    try:
                        chunk = source.read(CHUNK_BYTES)
                    except _CORRUPT as exc:
                        raise refused(entry.info.filename, f"the entry is corrupt ({exc})") from exc
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > budget:
                        raise refused(
                            entry.info.filename,
                            f"unpacking passes the {budget}-byte limit",
                            limit=budget,
                        )
                    out.write(chunk)
            os.fchmod(out.fileno(), 0o555 if entry.executable else 0o444)
        return written


def _make_dirs(dest: Path, parts: list[str], made: set[Path]) -> None:
    current = dest
    for part in parts:
        current = current / part
        if current not in made:
            # exist_ok: an explicit directory entry may follow files that implied it.
            current.mkdir(mode=0o755, exist_ok=True)
            made.add(current)


def _declared_size(info: zipfile.ZipInfo) -> int:
    """The uncompressed size the archive claims for an entry (it may lie)."""
    return info.file_size


def _check_entries(archive: zipfile.ZipFile, limits: ArtifactLimits) -> tuple[Entry, ...]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise refused(
            infos[limits.max_entries].filename,
            f"the archive holds {len(infos)} entries, over the limit of {limits.max_entries}",
            entries=len(infos),
            limit=limits.max_entries,
        )
    entries: dict[str, Entry] = {}
    total = 0
    for info in infos:
        entry = _check_entry(archive, info, limits)
        if entry is None:
            continue
        if entry.name in entries:
            raise refused(info.filename, "duplicate entry name")
        if entry.kind == "file":
            total += entry.size
            if total > limits.max_unpacked_bytes:
                raise refused(
                    info.filename,
                    f"the declared unpacked size passes the {limits.max_unpacked_bytes}-byte limit",
                    limit=limits.max_unpacked_bytes,
                )
        entries[entry.name] = entry
    _check_tree(entries)
    if all(entry.kind == "dir" for entry in entries.values()):
        raise refused(None, NO_FILES)
    return tuple(entries.values())


def _check_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArtifactLimits
) -> Entry | None:
    """Check what one entry says about itself; None for a directory entry naming the root."""
    raw = info.filename
    parts = _name_parts(raw)
    mode = info.external_attr >> 16
    kind: EntryKind
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISDIR(mode) or info.is_dir():
        kind = "dir"
    elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
        kind = "file"
    else:
        what = _TYPE_NAMES.get(stat.S_IFMT(mode), f"file type {stat.S_IFMT(mode):#o}")
        raise refused(raw, f"{what} entries are not allowed")
    if not parts:
        if kind == "dir":
            return None
        raise refused(raw, "the entry has an empty name")
    if info.flag_bits & 0x1:
        raise refused(raw, "encrypted entries are not allowed")
    if info.compress_type not in _METHODS:
        raise refused(raw, f"compression method {info.compress_type} is not supported")
    size = _declared_size(info)
    if kind == "file" and size > RATIO_MIN_BYTES:
        ratio = size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise refused(
                raw,
                f"compression ratio {ratio:.0f} is over {limits.max_ratio:g}: "
                "the entry looks like a zip bomb",
                ratio=ratio,
                limit=limits.max_ratio,
            )
    target = _link_target(archive, info) if kind == "symlink" else None
    return Entry(
        name="/".join(parts),
        kind=kind,
        executable=kind == "file" and bool(mode & 0o111),
        size=size,
        target=target,
        info=info,
    )


def _name_parts(raw: str) -> list[str]:
    """The components of an entry name, refusing any that could leave the archive root."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise refused(raw, "absolute paths are not allowed")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refused(raw, "'..' components are not allowed")
    return parts


def _link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    raw = info.filename
    if info.file_size > MAX_LINK_TARGET_BYTES:
        raise refused(raw, f"the symlink target is over {MAX_LINK_TARGET_BYTES} bytes")
    try:
        target = archive.read(info).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refused(raw, "the symlink target is not UTF-8") from exc
    except _CORRUPT as exc:
        raise refused(raw, f"the entry is corrupt ({exc})") from exc
    if not target or "\x00" in target:
        raise refused(raw, "the symlink target is empty or holds a NUL byte")
    # A backslash is a plain character to Linux but a separator to Windows: the same link
    # could be safe here and escape there, so it is refused rather than interpreted.
    if "\\" in target:
        raise refused(raw, "the symlink target holds a backslash", target=target)
    if target.startswith("/") or _DRIVE.match(target):
        raise refused(raw, f"the symlink target {target!r} is absolute", target=target)
    return target


def _check_tree(entries: dict[str, Entry]) -> None:
    """Check how entries relate: no entry below a file or a symlink, no link leaving the root."""
    links = {name: e.target for name, e in entries.items() if e.target is not None}
    for entry in entries.values():
        parts = entry.name.split("/")
        for depth in range(1, len(parts)):
            parent = entries.get("/".join(parts[:depth]))
            # Writing below a symlink would follow it wherever it points.
            if parent is not None and parent.kind != "dir":
                raise refused(
                    entry.info.filename, f"its parent {parent.info.filename!r} is a {parent.kind}"
                )
        if entry.target is not None:
            try:
                _resolve(parts[:-1] + entry.target.split("/"), links)
            except _Escape as exc:
                raise refused(entry.info.filename, str(exc), target=entry.target) from exc


def _resolve(parts: list[str], links: dict[str, str]) -> list[str]:
    """Resolve a path inside the archive the way the kernel would once it is unpacked.

    A lexical check is not enough: ``a/b/up -> ../..`` is inside, yet ``x -> a/b/up/../..``,
    lexically the root, really resolves through ``up`` to the parent of the root. So links
    met along the way are followed, as realpath would.
    """
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise _Escape("the symlink target points outside the archive")
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _Escape("the symlink target loops")
            resolved.pop()
            pending = target.split("/") + pending
    return resolved
