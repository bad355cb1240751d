"""The layer routes of the SDK, sync and async, against the real app in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ember.api import create_app
from ember.bootstrap import build
from ember.client import AsyncClient, Client
from ember.errors import Conflict, InvalidSpec, LayerNotFound
from ember.settings import Settings
from tests.conftest import AUTH, make_zip

USES = "import greetings\n\ndef handler(event, context):\n    return {'word': greetings.greet()}\n"


def layer_dir(root: Path, text: str) -> Path:
    (root / "python").mkdir(parents=True)
    (root / "python" / "greetings.py").write_text(f"def greet():\n    return {text!r}\n")
    return root


def test_sync_client_round_trip(settings: Settings, tmp_path: Path) -> None:
    app = create_app(build(settings))
    with TestClient(app, base_url="http://ember", headers=AUTH) as http, Client(http=http) as ember:
        first = ember.publish_layer("greet", layer_dir(tmp_path / "v1", "one"), "first")
        assert (first.layer, first.version, first.created) == ("greet", 1, True)
        again = ember.publish_layer("greet", layer_dir(tmp_path / "again", "one"))
        assert (again.version, again.created) == (1, False)
        ember.create_function("fn", make_zip({"main.py": USES}), {"layers": ["greet"]})
        ember.publish_version("fn")
        assert ember.invoke("fn").json() == {"word": "one"}

        ember.publish_layer("greet", layer_dir(tmp_path / "v2", "two"))
        assert ember.invoke("fn").json() == {"word": "one"}  # latest keeps greet:1 until updated
        ember.update_function("fn", {"layers": ["greet:2"]})
        assert ember.invoke("fn").json() == {"word": "two"}
        assert ember.invoke("fn", qualifier=1).json() == {"word": "one"}

        assert [(x.name, x.latest_version) for x in ember.list_layers()] == [("greet", 2)]
        assert [v.version for v in ember.list_layer_versions("greet")] == [1, 2]
        assert ember.get_layer_version("greet", 1).description == "first"
        with pytest.raises(Conflict) as refused:
            ember.delete_layer_version("greet", 1)
        assert refused.value.details["used_by"] == ["fn:1"]
        with pytest.raises(InvalidSpec) as invalid:
            ember.update_function("fn", {"layers": ["greet:9"]})
        assert invalid.value.details["errors"][0]["field"] == "config.layers[0]"
        with pytest.raises(LayerNotFound):
            ember.get_layer_version("ghost", 1)
        ember.delete_version("fn", 1)
        assert ember.delete_layer_version("greet", 1).version == 1


def test_async_client_round_trip(settings: Settings) -> None:
    app = create_app(build(settings))

    async def scenario() -> None:
        async with (
            app.router.lifespan_context(app),
            AsyncClient("http://ember", transport=httpx.ASGITransport(app=app)) as ember,
        ):
            data = make_zip({"greetings.py": "def greet():\n    return 'flat'\n"})
            published = await ember.publish_layer("flat", data)
            assert published.version == 1
            assert [x.name for x in await ember.list_layers()] == ["flat"]
            assert [v.version for v in await ember.list_layer_versions("flat")] == [1]
            assert (await ember.get_layer_version("flat", 1)).code == published.code
            assert (await ember.delete_layer_version("flat", 1)).version == 1
            with pytest.raises(LayerNotFound):
                await ember.get_layer_version("flat", 1)

    asyncio.run(scenario())
