"""What a web page in a browser cannot make Ember do: DNS rebinding (a foreign Host),
cross-site requests that change things; CORS only when configured; the server's warnings
when it listens beyond loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ember.api.guard import host_name
from ember.cli.server import exposure_warnings
from ember.settings import Settings
from tests.conftest import AUTH
from tests.inprocess import running


def run(settings: Settings, scenario: object) -> None:
    import asyncio

    async def main() -> None:
        async with running(settings) as ember:
            await scenario(ember.app)  # type: ignore[operator]

    asyncio.run(main())


def client(app: object, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                             base_url=f"http://{host}", headers=AUTH)


@pytest.mark.parametrize("value,name", [
    ("localhost:8080", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]:8080", "::1"),
    ("Attacker.Example:80", "attacker.example"), ("", ""),
])
def test_host_names(value: str, name: str) -> None:
    assert host_name(value) == name


def test_only_loopback_host_names_are_served_by_default(home: Path) -> None:
    async def scenario(app: object) -> None:
        for host in ("127.0.0.1:8080", "localhost", "[::1]:9000"):
            async with client(app, host) as http:
                assert (await http.get("/healthz")).status_code == 200, host
        async with client(app, "attacker.example") as http:
            for answer in (await http.get("/functions"),
                           await http.post("/functions/x/invoke", json={}),
                           await http.get("/healthz")):
                assert answer.status_code == 400
                error = answer.json()["error"]
                assert error["code"] == "InvalidRequest"
                assert error["details"]["field"] == "Host"
                assert "EMBER_ALLOWED_HOSTS" in error["message"]

    run(Settings(home=home, allowed_hosts="localhost,127.0.0.1,::1"), scenario)


def test_a_configured_host_and_any_host(home: Path) -> None:
    async def named(app: object) -> None:
        async with client(app, "ember.lan:8080") as http:
            assert (await http.get("/healthz")).status_code == 200
        async with client(app, "other.lan") as http:
            assert (await http.get("/healthz")).status_code == 400

    run(Settings(home=home, allowed_hosts="ember.lan"), named)

    async def anything(app: object) -> None:
        async with client(app, "whatever.example") as http:
            assert (await http.get("/healthz")).status_code == 200

    run(Settings(home=home, allowed_hosts="*"), anything)


def test_a_cross_site_page_cannot_change_anything(home: Path) -> None:
    async def scenario(app: object) -> None:
        async with client(app, "127.0.0.1:8080") as http:
            # What a page on another site sends with a form or a no-cors fetch.
            for headers in ({"Origin": "http://evil.example",
                             "Content-Type": "text/plain"},
                            {"Origin": "null"},
                            {"Sec-Fetch-Site": "cross-site"}):
                answer = await http.post("/functions/f/disable", headers=headers)
                assert answer.status_code == 403, headers
                assert answer.json()["error"]["code"] == "Forbidden"
                answer = await http.post("/functions/f/invoke", content=b"x", headers=headers)
                assert answer.status_code == 403, headers
            # Reading is not changing; programs send no Origin; a page served by an
            # allowed host is same-site.
            refused = await http.get("/functions", headers={"Origin": "http://evil.example"})
            assert refused.status_code == 200
            assert "access-control-allow-origin" not in refused.headers  # CORS is off
            missing = await http.post("/functions/f/disable")
            assert missing.status_code == 404  # went through: the function does not exist
            local = await http.post("/functions/f/disable",
                                    headers={"Origin": "http://localhost:3000",
                                             "Sec-Fetch-Site": "same-site"})
            assert local.status_code == 404

    run(Settings(home=home, allowed_hosts="localhost,127.0.0.1,::1"), scenario)


def test_cors_only_for_configured_origins(home: Path) -> None:
    async def scenario(app: object) -> None:
        async with client(app, "127.0.0.1") as http:
            allowed = await http.get("/functions", headers={"Origin": "https://console.lan"})
            assert allowed.headers["access-control-allow-origin"] == "https://console.lan"
            other = await http.get("/functions", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
            changed = await http.post("/functions/f/disable",
                                      headers={"Origin": "https://console.lan"})
            assert changed.status_code == 404  # allowed through, to a missing function

    run(Settings(home=home, allowed_hosts="127.0.0.1", cors_origins="https://console.lan"),
        scenario)


def test_the_server_warns_when_it_listens_beyond_loopback(tmp_path: Path) -> None:
    assert exposure_warnings(Settings(home=tmp_path)) == []
    wide = exposure_warnings(Settings(home=tmp_path, host="0.0.0.0",
                                      allowed_hosts="localhost,127.0.0.1,::1"))
    assert any("reachable from other machines" in line for line in wide)
    assert any("no TLS" in line for line in wide)
    assert any("EMBER_ALLOWED_HOSTS" in line for line in wide)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    quiet = exposure_warnings(Settings(home=tmp_path, host="0.0.0.0", tls_cert=cert,
                                       tls_key=key, allowed_hosts="ember.lan"))
    assert quiet == ["listening on 0.0.0.0: Ember is reachable from other machines"]
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Settings(home=tmp_path, tls_cert=cert)
