"""FilesystemArtifactStore: content-addressed, idempotent, atomic, read-only."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest

from ember.artifacts import (
    ArtifactLimits,
    ArtifactStore,
    CheckedArchive,
    FilesystemArtifactStore,
)
from ember.errors import NotFound
from ember.model.function import CodeRef
from tests.threads import at_once


def make_zip(files: dict[str, bytes], executable: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | (0o755 if name in executable else 0o644)) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


CODE = make_zip(
    {"main.py": b"def handler(event, context):\n    return event\n", "bin/run": b"#!/bin/sh\n"},
    executable=("bin/run",),
)
SHA = hashlib.sha256(CODE).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(tmp_path / "artifacts")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_it_is_an_artifact_store(store: FilesystemArtifactStore) -> None:
    typed: ArtifactStore = store
    assert typed is store


def test_put_stores_the_zip_and_unpacks_it(store: FilesystemArtifactStore) -> None:
    ref = store.put(CODE)
    assert ref == CodeRef(sha256=SHA, size=len(CODE))
    assert store.exists(SHA)
    assert store.read(SHA) == CODE
    assert store.list() == [SHA]
    code = store.path(SHA)
    assert code == store.root / "code" / SHA
    assert (code / "main.py").read_bytes().startswith(b"def handler")
    assert (store.root / "blobs" / SHA[:2] / f"{SHA}.zip").read_bytes() == CODE
    assert sorted(p.name for p in store.root.iterdir()) == ["blobs", "code"]


def test_put_is_idempotent_and_rewrites_nothing(store: FilesystemArtifactStore) -> None:
    first = store.put(CODE)
    blob = store.root / "blobs" / SHA[:2] / f"{SHA}.zip"
    before = (blob.stat().st_ino, blob.stat().st_mtime_ns, store.path(SHA).stat().st_ino)
    assert store.put(CODE) == first
    after = (blob.stat().st_ino, blob.stat().st_mtime_ns, store.path(SHA).stat().st_ino)
    assert after == before
    assert store.list() == [SHA]


def test_unpacked_trees_and_blobs_are_read_only(store: FilesystemArtifactStore) -> None:
    code = store.path(store.put(CODE).sha256)
    assert mode(code) == 0o555
    assert mode(code / "bin") == 0o555
    assert mode(code / "main.py") == 0o444
    assert mode(code / "bin" / "run") == 0o555
    assert mode(store.root / "blobs" / SHA[:2] / f"{SHA}.zip") == 0o444


def test_delete_removes_read_only_trees(store: FilesystemArtifactStore) -> None:
    other = store.put(make_zip({"other.py": b"x"})).sha256
    store.put(CODE)
    store.delete(SHA)
    assert not store.exists(SHA)
    assert not (store.root / "code" / SHA).exists()
    assert store.list() == [other]
    with pytest.raises(NotFound):
        store.path(SHA)
    with pytest.raises(NotFound):
        store.read(SHA)
    store.delete(SHA)  # missing is fine
    assert sorted(p.name for p in store.root.iterdir()) == ["blobs", "code"]
    assert store.exists(other)


def test_missing_artifacts_are_not_found(store: FilesystemArtifactStore) -> None:
    assert not store.exists(SHA)
    assert store.list() == []
    with pytest.raises(NotFound) as caught:
        store.path(SHA)
    assert caught.value.details == {"sha256": SHA}
    with pytest.raises(NotFound):
        store.read(SHA)
    store.delete(SHA)


@pytest.mark.parametrize("bad", ["../../etc", "", SHA.upper(), SHA[:-1], f"{SHA[:-2]}/."])
def test_malformed_sha256s_name_nothing(store: FilesystemArtifactStore, bad: str) -> None:
    store.put(CODE)
    assert not store.exists(bad)
    with pytest.raises(NotFound):
        store.path(bad)
    with pytest.raises(NotFound):
        store.read(bad)
    store.delete(bad)
    assert store.exists(SHA)


def test_concurrent_puts_of_the_same_bytes_leave_one_copy(store: FilesystemArtifactStore) -> None:
    refs = at_once([lambda: store.put(CODE)] * 8)
    assert refs == [CodeRef(SHA, len(CODE))] * 8
    # No staging directory or temp blob is left behind by the losers of the race.
    assert sorted(p.name for p in store.root.iterdir()) == ["blobs", "code"]
    assert [p.name for p in (store.root / "blobs" / SHA[:2]).iterdir()] == [f"{SHA}.zip"]
    assert (store.path(SHA) / "main.py").is_file()


def test_a_tree_without_its_zip_is_completed(store: FilesystemArtifactStore) -> None:
    # As if a put crashed between placing the tree and writing the zip.
    store.put(CODE)
    (store.root / "blobs" / SHA[:2] / f"{SHA}.zip").unlink()
    assert not store.exists(SHA)
    assert store.put(CODE).sha256 == SHA
    assert store.exists(SHA)
    assert store.read(SHA) == CODE


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        ArtifactLimits(max_ratio=0)
    with pytest.raises(ValueError, match="max_entries"):
        ArtifactLimits(max_entries=-1)


def test_the_loser_of_the_rename_race_discards_its_tree(
    store: FilesystemArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the race: while this put unpacks, a rival stores the same bytes first.
    extract_to = CheckedArchive.extract_to
    winner: list[int] = []

    def extract_then_lose(archive: CheckedArchive, dest: Path) -> None:
        extract_to(archive, dest)
        monkeypatch.setattr(CheckedArchive, "extract_to", extract_to)
        rival = FilesystemArtifactStore(store.root)
        winner.append(rival.path(rival.put(CODE).sha256).stat().st_ino)

    monkeypatch.setattr(CheckedArchive, "extract_to", extract_then_lose)
    assert store.put(CODE) == CodeRef(SHA, len(CODE))
    assert store.path(SHA).stat().st_ino == winner[0]
    assert sorted(p.name for p in store.root.iterdir()) == ["blobs", "code"]
