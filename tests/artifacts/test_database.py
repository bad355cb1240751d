"""SqlArtifactStore: zips in the metadata database, unpacked once per node.

The ArtifactStore contract runs on both stores (filesystem and database); the database store
runs on SQLite, and on PostgreSQL when EMBER_DATABASE_URL is set. Two stores with different
homes on one database stand for two nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ember.artifacts import ArtifactLimits, ArtifactStore, FilesystemArtifactStore
from ember.artifacts.database import SqlArtifactStore
from ember.clock import ManualClock
from ember.control.builds import BuildService
from ember.errors import EmberError, InvalidCode, NotFound, PayloadTooLarge
from ember.model.function import CodeRef
from ember.settings import Settings
from ember.store.builds import SqlBuildStore
from ember.store.migrate import upgrade
from ember.store.schema import artifacts
from ember.store.sql import create_engine
from tests.artifacts.test_filesystem import CODE, SHA, make_zip
from tests.inprocess import running
from tests.threads import at_once

OTHER = make_zip({"other.py": b"x = 1\n"})
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_engine(settings.resolved_database_url())
    upgrade(engine)
    yield engine
    engine.dispose()


Make = Callable[..., ArtifactStore]


@pytest.fixture(params=["filesystem", "database"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    """Makes stores of one kind; each call is another node (its own home)."""
    homes = iter(range(100))

    def make(limits: ArtifactLimits = ArtifactLimits()) -> ArtifactStore:
        cache = FilesystemArtifactStore(tmp_path / f"node{next(homes)}" / "artifacts", limits)
        if request.param == "filesystem":
            return cache
        return SqlArtifactStore(request.getfixturevalue("engine"), cache)

    return make


# the contract, on both stores -------------------------------------------------------------

def test_put_stores_and_unpacks(make: Make) -> None:
    store = make()
    assert store.put(CODE) == CodeRef(SHA, len(CODE))
    assert store.exists(SHA)
    assert store.read(SHA) == CODE
    assert store.list() == [SHA]
    assert (store.path(SHA) / "main.py").read_bytes().startswith(b"def handler")
    assert store.put(CODE) == CodeRef(SHA, len(CODE))  # idempotent
    assert store.list() == [SHA]


def test_delete_removes_one_artifact(make: Make) -> None:
    store = make()
    store.put(CODE)
    store.put(OTHER)
    assert store.list() == sorted([SHA, OTHER_SHA])
    store.delete(SHA)
    assert not store.exists(SHA)
    assert store.list() == [OTHER_SHA]
    with pytest.raises(NotFound):
        store.path(SHA)
    with pytest.raises(NotFound):
        store.read(SHA)
    store.delete(SHA)  # missing is fine
    assert store.exists(OTHER_SHA)


def test_missing_artifacts_are_not_found(make: Make) -> None:
    store = make()
    assert not store.exists(SHA)
    assert store.list() == []
    with pytest.raises(NotFound) as caught:
        store.path(SHA)
    assert caught.value.details == {"sha256": SHA}
    with pytest.raises(NotFound):
        store.read(SHA)
    store.delete(SHA)


@pytest.mark.parametrize("bad", ["../../etc", "", SHA.upper(), SHA[:-1], f"{SHA[:-2]}/."])
def test_malformed_sha256s_name_nothing(make: Make, bad: str) -> None:
    store = make()
    store.put(CODE)
    assert not store.exists(bad)
    with pytest.raises(NotFound):
        store.path(bad)
    with pytest.raises(NotFound):
        store.read(bad)
    store.delete(bad)
    assert store.exists(SHA)


def test_limits_are_enforced_and_nothing_is_stored(make: Make) -> None:
    store = make(ArtifactLimits(max_zip_bytes=len(CODE) - 1))
    with pytest.raises(PayloadTooLarge):
        store.put(CODE)
    store = make(ArtifactLimits(max_entries=1))
    with pytest.raises(InvalidCode):
        store.put(CODE)  # two entries
    with pytest.raises(InvalidCode):
        store.put(b"not a zip")
    assert store.list() == []
    assert not store.exists(SHA)


def test_concurrent_puts_of_the_same_bytes_leave_one_copy(make: Make) -> None:
    stores = [make(), make()]  # two nodes, for the database store
    refs = at_once([lambda store=stores[i % 2]: store.put(CODE) for i in range(8)])
    assert refs == [CodeRef(SHA, len(CODE))] * 8
    assert stores[0].list() == [SHA]


# two nodes on one database ----------------------------------------------------------------

class CountingEngine:
    """An engine that counts the reads of artifact bytes made through it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.fetches = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT ARTIFACTS.DATA"):
            self.fetches += 1

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def counting(engine: sa.Engine) -> Iterator[CountingEngine]:
    counter = CountingEngine(engine)
    yield counter
    counter.close()


def node(engine: sa.Engine, home: Path, limits: ArtifactLimits = ArtifactLimits()) -> (
    SqlArtifactStore
):
    return SqlArtifactStore(engine, FilesystemArtifactStore(home / "artifacts", limits))


def test_a_second_node_fetches_an_artifact_once(
    engine: sa.Engine, counting: CountingEngine, tmp_path: Path
) -> None:
    first, second = node(engine, tmp_path / "a"), node(engine, tmp_path / "b")
    first.put(CODE)
    assert counting.fetches == 0  # the first node wrote its cache as it stored the zip
    assert second.exists(SHA)
    assert not second.cache.exists(SHA)
    code = second.path(SHA)
    assert counting.fetches == 1
    assert code == tmp_path / "b" / "artifacts" / "code" / SHA
    assert second.cache.exists(SHA)
    assert _tree(code) == _tree(first.path(SHA))
    assert second.path(SHA) == code
    assert second.read(SHA) == CODE  # from the cache too
    assert counting.fetches == 1


def test_concurrent_fetches_on_one_node_read_the_database_once(
    engine: sa.Engine, counting: CountingEngine, tmp_path: Path
) -> None:
    node(engine, tmp_path / "a").put(CODE)
    second = node(engine, tmp_path / "b")
    paths = at_once([lambda: second.path(SHA)] * 8)
    assert paths == [tmp_path / "b" / "artifacts" / "code" / SHA] * 8
    assert counting.fetches == 1
    root = tmp_path / "b" / "artifacts"
    assert sorted(p.name for p in root.iterdir()) == ["blobs", "code"]  # no staging left


def test_a_delete_on_one_node_removes_the_artifact_for_all(
    engine: sa.Engine, tmp_path: Path
) -> None:
    first, second = node(engine, tmp_path / "a"), node(engine, tmp_path / "b")
    first.put(CODE)
    second.delete(SHA)
    assert first.list() == []
    assert not first.exists(SHA)
    with pytest.raises(NotFound):
        node(engine, tmp_path / "c").path(SHA)


def test_a_corrupt_row_is_refused_and_never_unpacked(
    engine: sa.Engine, tmp_path: Path
) -> None:
    node(engine, tmp_path / "a").put(CODE)
    with engine.begin() as conn:
        conn.execute(artifacts.update().where(artifacts.c.sha256 == SHA).values(data=OTHER))
    second = node(engine, tmp_path / "b")
    for call in (second.path, second.read):
        with pytest.raises(EmberError, match="corrupt in the database") as caught:
            call(SHA)
        assert caught.value.code == "Internal"
        assert caught.value.details["actual_sha256"] == OTHER_SHA
    assert not (tmp_path / "b" / "artifacts" / "code").exists()


def test_a_fetched_zip_is_held_to_this_nodes_limits(engine: sa.Engine, tmp_path: Path) -> None:
    node(engine, tmp_path / "a").put(CODE)
    small = node(engine, tmp_path / "b", ArtifactLimits(max_entries=1))
    with pytest.raises(InvalidCode):
        small.path(SHA)
    assert not small.cache.exists(SHA)


# dependency builds shared between nodes (pip replaced by a fake that writes a package) --

class FakePip:
    def __init__(self, files: int = 1) -> None:
        self.runs = 0
        self.files = files

    def __call__(self, target: Path, _code: Path, _out: Any) -> None:
        self.runs += 1
        (target / "dep").mkdir()
        for n in range(self.files):
            (target / "dep" / f"m{n}.py").write_text(f"N = {n}\n")


@pytest.fixture
def pip(monkeypatch: pytest.MonkeyPatch) -> FakePip:
    fake = FakePip()
    monkeypatch.setattr(BuildService, "_pip", fake)
    return fake


def builder(engine: sa.Engine, home: Path, limits: ArtifactLimits = ArtifactLimits()) -> (
    BuildService
):
    return BuildService(SqlBuildStore(engine), home / "deps", ManualClock(), limits=limits,
                        shared=node(engine, home, limits))


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("dep==1\n")
    return code


def test_a_build_is_fetched_by_another_node(
    engine: sa.Engine, pip: FakePip, tmp_path: Path, code_dir: Path
) -> None:
    built = builder(engine, tmp_path / "a").ensure(code_dir, "fn")
    assert built is not None and built == tmp_path / "a" / "deps" / built.name
    fetched = builder(engine, tmp_path / "b").ensure(code_dir, "fn")
    assert fetched is not None and fetched.parent == tmp_path / "b" / "artifacts" / "code"
    assert _tree(fetched) == _tree(built)
    assert pip.runs == 1
    assert len(SqlBuildStore(engine).list_for("fn")) == 1


def test_a_lost_shared_build_is_built_again(
    engine: sa.Engine, pip: FakePip, tmp_path: Path, code_dir: Path
) -> None:
    first = builder(engine, tmp_path / "a")
    built = first.ensure(code_dir, "fn")
    assert built is not None
    store = SqlBuildStore(engine)
    [lost] = store.list_for("fn")
    sha = store.shared(lost.key)
    assert sha is not None
    node(engine, tmp_path / "a").delete(sha)
    again = builder(engine, tmp_path / "b").ensure(code_dir, "fn")
    assert again == tmp_path / "b" / "deps" / lost.key
    assert pip.runs == 2
    assert store.shared(lost.key) is not None  # the second node's build, shared in turn


def test_a_build_over_the_limits_stays_on_its_node(
    engine: sa.Engine, pip: FakePip, tmp_path: Path, code_dir: Path
) -> None:
    pip.files = 3
    service = builder(engine, tmp_path / "a", ArtifactLimits(max_entries=2))
    assert service.ensure(code_dir, "fn") is not None
    store = SqlBuildStore(engine)
    [build] = store.list_for("fn")
    assert store.shared(build.key) is None
    assert "kept on this node only" in store.get(build.id).log
    assert node(engine, tmp_path / "a").list() == []


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


# two servers on one database --------------------------------------------------------------

def test_a_function_deployed_on_one_node_runs_on_another(tmp_path: Path) -> None:
    first, second = _two_nodes(tmp_path)

    async def main() -> None:
        async with running(first) as a:
            await a.deploy("hello", "def handler(event, context):\n    return {'hi': event}\n")
            async with running(second) as b:
                answer = await b.invoke("hello", {"n": 1})
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"hi": {"n": 1}}
                assert (tmp_path / "second" / "artifacts" / "code").is_dir()

    asyncio.run(main())


CAMEL = """
import inflection

def handler(event, context):
    return {"camel": inflection.camelize(event), "from": inflection.__file__}
"""


def test_dependencies_built_on_one_node_are_fetched_by_another(tmp_path: Path) -> None:
    first, second = _two_nodes(tmp_path)

    async def main() -> None:
        async with running(first) as a:
            await a.deploy_files("camel", {"main.py": CAMEL,
                                           "requirements.txt": "inflection==0.5.1\n"})
            [build] = (await a.http.get("/functions/camel/builds")).json()["builds"]
            log = (await a.http.get(f"/builds/{build['id']}")).json()["log"]
            assert "stored for the other nodes as artifact" in log
            async with running(second) as b:
                answer = await b.invoke("camel", "two_nodes")
                assert answer.status_code == 200, answer.text
                assert answer.json()["camel"] == "TwoNodes"
                # From the artifact fetched (its host path, or where the sandbox shows it):
                # the second node ran no build of its own.
                where = answer.json()["from"]
                assert "/artifacts/code/" in where or "/var/layers/" in where, where
                builds = (await b.http.get("/functions/camel/builds")).json()["builds"]
                assert [b["id"] for b in builds] == [build["id"]]
                assert not (tmp_path / "second" / "deps").exists()

    asyncio.run(main())


def _two_nodes(tmp_path: Path) -> tuple[Settings, Settings]:
    """Two servers' settings on one database: on SQLite the first's file, with the database
    store asked for; on PostgreSQL (EMBER_DATABASE_URL) "auto" picks it."""
    first_home, second_home = tmp_path / "first", tmp_path / "second"
    shared = {} if Settings().database_url else {
        "database_url": f"sqlite:///{first_home / 'ember.db'}", "artifact_store": "database",
    }
    return Settings(home=first_home, **shared), Settings(home=second_home, **shared)
