"""Artifacts on the local filesystem: zips by sha256 and their unpacked, read-only trees.

Layout under ``root``::

    blobs/<sha[:2]>/<sha>.zip   the zip as uploaded (0o444)
    code/<sha>/                 its unpacked tree (files 0o444 or 0o555, directories 0o555)
    .unpack-*/ .delete-*/       transient: a tree being unpacked or removed

Every write is atomic, so a reader never sees half an artifact: a zip is written to a temp
file then ``os.replace``d; a tree is unpacked into a temp directory beside ``code/`` then
renamed into place. The tree is placed before the zip, and the zip removed before the tree,
so a present zip always means a complete artifact.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from ember.artifacts.base import ArtifactLimits
from ember.artifacts.unzip import CheckedArchive, check_size, open_archive
from ember.errors import NotFound
from ember.model.function import CodeRef

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FilesystemArtifactStore:
    """An ``ArtifactStore`` in a directory of the local filesystem.

    Safe for concurrent use by threads and processes sharing ``root``: two ``put``s of the
    same bytes both succeed and leave one copy.

    Args:
        root: the directory holding every artifact; created on the first ``put``.
        limits: what an archive may weigh; see ``ArtifactLimits``.
    """

    def __init__(self, root: Path, limits: ArtifactLimits = ArtifactLimits()) -> None:
        self.root = Path(root)
        self.limits = limits

    def put(self, data: bytes) -> CodeRef:
        """Check, store and unpack a zip; the same bytes are stored once.

        Raises:
            PayloadTooLarge: ``data`` is over ``limits.max_zip_bytes``.
            InvalidCode: ``data`` is not a zip or is unsafe; nothing is written then.
        """
        check_size(len(data), self.limits)
        sha256 = hashlib.sha256(data).hexdigest()
        ref = CodeRef(sha256=sha256, size=len(data))
        if self.exists(sha256):
            return ref
        # Every entry is checked here, before anything below touches the disk.
        with open_archive(data, self.limits) as archive:
            self._place_code(sha256, archive)
        self._place_blob(sha256, data)
        return ref

    def path(self, sha256: str) -> Path:
        """The unpacked, read-only directory of an artifact.

        Raises:
            NotFound: no artifact has this sha256.
        """
        code = self._code_dir(sha256)
        if code is None or not code.is_dir():
            raise _not_found(sha256)
        return code

    def exists(self, sha256: str) -> bool:
        """Whether the zip and the unpacked directory of an artifact are both present."""
        blob, code = self._blob_file(sha256), self._code_dir(sha256)
        return blob is not None and code is not None and blob.is_file() and code.is_dir()

    def read(self, sha256: str) -> bytes:
        """The zip bytes of an artifact, as they were put.

        Raises:
            NotFound: no artifact has this sha256.
        """
        blob = self._blob_file(sha256)
        if blob is None:
            raise _not_found(sha256)
        try:
            return blob.read_bytes()
        except FileNotFoundError as exc:
            raise _not_found(sha256) from exc

    def delete(self, sha256: str) -> None:
        """Remove an artifact's zip and unpacked tree; a missing artifact is not an error."""
        blob, code = self._blob_file(sha256), self._code_dir(sha256)
        if blob is None or code is None:
            return
        blob.unlink(missing_ok=True)
        # Move the tree out of the way first, so a reader never sees it half removed. Moving
        # a directory to another parent needs write permission on it (to update its '..').
        trash = self.root / f".delete-{uuid.uuid4().hex}"
        try:
            os.chmod(code, 0o755)
            os.rename(code, trash)
        except FileNotFoundError:
            return  # already gone, or removed by a concurrent delete
        remove_tree(trash)

    def list(self) -> builtins.list[str]:
        """The sha256 of every stored artifact, sorted."""
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return []
        found = (blob.name.removesuffix(".zip") for blob in blobs.glob("??/*.zip"))
        return sorted(sha for sha in found if _SHA256.match(sha))

    def _place_code(self, sha256: str, archive: CheckedArchive) -> None:
        final = self.root / "code" / sha256
        if final.is_dir():
            return  # a put that crashed before writing the zip left a complete tree
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.root))
        try:
            archive.extract_to(staging)
            final.parent.mkdir(exist_ok=True)
            place_tree(staging, final)
        finally:
            if staging.exists():
                remove_tree(staging)

    def _place_blob(self, sha256: str, data: bytes) -> None:
        blob = self._blob_file(sha256)
        assert blob is not None  # put computed the sha256 itself
        if blob.is_file():
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=blob.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), 0o444)
            os.replace(temp_name, blob)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise

    def _blob_file(self, sha256: str) -> Path | None:
        # Validating the sha256 keeps a caller's string from naming a path outside root.
        if not _SHA256.match(sha256):
            return None
        return self.root / "blobs" / sha256[:2] / f"{sha256}.zip"

    def _code_dir(self, sha256: str) -> Path | None:
        if not _SHA256.match(sha256):
            return None
        return self.root / "code" / sha256


def place_tree(staging: Path, final: Path) -> None:
    """Rename the complete tree ``staging`` to ``final`` and seal it read-only; when a
    concurrent writer of the same content placed ``final`` first, leave ``staging`` (the
    caller removes it)."""
    try:
        os.rename(staging, final)
    except OSError:
        # The other writer won the race (renaming onto a non-empty directory fails): its
        # tree is as good as ours.
        if not final.is_dir():
            raise
    else:
        # Sealed only now: the rename above needed the directory writable.
        os.chmod(final, 0o555)


def remove_tree(path: Path) -> None:
    """Remove a directory tree even where it was made read-only.

    Removing an entry needs write permission on its directory, so every directory is made
    writable first. Symlinks are never followed: ``os.walk`` does not descend into them, and
    only the directories it walks are chmod-ed.
    """
    for directory, _dirs, _files in os.walk(path):
        os.chmod(directory, 0o700)
    shutil.rmtree(path)


def _not_found(sha256: str) -> NotFound:
    return NotFound(f"artifact {sha256!r} not found", {"sha256": sha256})
