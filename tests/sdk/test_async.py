"""The async SDK through httpx.ASGITransport, with the app's lifespan running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ember.client import AsyncClient
from ember.errors import Conflict, FunctionNotFound, InvalidSpec, ServiceUnavailable
from tests.conftest import HELLO, make_zip
from tests.sdk.conftest import write_code


@asynccontextmanager
async def connected(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        AsyncClient("http://ember", transport=httpx.ASGITransport(app=app)) as client,
    ):
        yield client


def test_async_client_round_trip(app: FastAPI, tmp_path: Path) -> None:
    code = write_code(tmp_path / "src")

    async def scenario() -> None:
        async with connected(app) as client:
            assert (await client.health()).status == "ok"
            created = await client.create_function("a1", code, {"memory_mb": 512})
            assert created.config.memory_mb == 512
            await client.create_function("a2", make_zip(HELLO))
            assert (await client.get_function("a1")) == created
            names = [f.name async for f in client.iter_functions(page_size=1)]
            assert names == ["a1", "a2"]
            page = await client.list_functions(prefix="a", limit=1)
            assert [f.name for f in page.functions] == ["a1"] and page.next_cursor

            updated = await client.update_function("a1", {"timeout_s": 5})
            assert updated.config.timeout_s == 5 and updated.config.memory_mb == 512
            await client.update_code("a1", make_zip(HELLO))
            assert await client.download_code("a1") == make_zip(HELLO)
            assert (await client.disable_function("a1")).state == "disabled"
            assert (await client.enable_function("a1")).state == "enabled"

            version = await client.publish_version("a1", "one")
            assert version.created and version.version == 1
            assert [v.version for v in await client.list_versions("a1")] == [1]
            assert (await client.get_version("a1", 1)).description == "one"
            alias = await client.set_alias("a1", "live", 1)
            assert (await client.get_alias("a1", "live")) == alias
            assert [a.name for a in await client.list_aliases("a1")] == ["live"]
            with pytest.raises(Conflict):
                await client.delete_version("a1", 1)
            await client.delete_alias("a1", "live")
            assert (await client.delete_version("a1", 1)).version == 1

            result = await client.invoke("a1", {"x": 1})
            assert result.json() == {"hello": {"x": 1}} and result.request_id
            logs = await client.get_logs("a1", limit=10)
            assert logs.logs == []  # HELLO prints nothing
            assert isinstance(await client.get_stats("a1"), dict)
            invocations = await client.list_invocations("a1", status="success")
            assert [i.request_id for i in invocations.invocations] == [result.request_id]

            with pytest.raises(InvalidSpec) as bad:
                await client.create_function("a3", make_zip(HELLO), {"memory_mb": 1})
            assert bad.value.details["errors"][0]["field"] == "config.memory_mb"
            await client.delete_function("a1")
            with pytest.raises(FunctionNotFound):
                await client.get_function("a1")

    asyncio.run(scenario())


def test_async_connection_refused() -> None:
    async def scenario() -> None:
        async with AsyncClient("http://127.0.0.1:1", timeout=5) as client:
            with pytest.raises(ServiceUnavailable, match="ember server"):
                await client.health()

    asyncio.run(scenario())
