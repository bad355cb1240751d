"""Node-to-node calls: a node calls another with the credential every node derives from the
shared master key, naming itself; anything less is refused. A fan-out lists the nodes that
failed, hung or are dead as unreachable instead of failing."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path

import httpx

from ember.cluster.nodes import ALIVE, DEAD, STOPPED, Node
from ember.cluster.peers import (
    NODE_HEADER,
    SCOPE_HEADER,
    NodeCredential,
    PeerClient,
    derive_credential,
)
from ember.settings import Settings
from tests.conftest import make_zip
from tests.inprocess import Ember, running
from tests.servers import free_port

MASTER = base64.b64encode(os.urandom(32)).decode()
CODE = {"zip": base64.b64encode(make_zip({"main.py": "def handler(e, c):\n  print(e)\n"}))
        .decode()}


def node_headers(master: str = MASTER, node: str | None = "peer-1") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {derive_credential(base64.b64decode(master))}"}
    if node is not None:
        headers[NODE_HEADER] = node
    return headers


def serve(home: Path, scenario: object) -> None:
    async def main() -> None:
        async with running(Settings(home=home, master_key=MASTER)) as ember:
            await scenario(ember)  # type: ignore[operator]

    asyncio.run(main())


async def bare(ember: Ember, headers: dict[str, str], method: str, path: str,
               **kwargs: object) -> httpx.Response:
    """A request with only ``headers`` (not the tests' admin key)."""
    transport = httpx.ASGITransport(app=ember.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ember") as http:
        return await http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


def test_a_node_is_an_admin_named_by_its_header_but_for_keys_and_the_audit(
        tmp_path: Path) -> None:
    async def scenario(ember: Ember) -> None:
        created = await bare(ember, node_headers(), "POST", "/functions",
                             json={"name": "f", "config": {}, "code": CODE})
        assert created.status_code == 201, created.text
        listed = await bare(ember, node_headers(), "GET", "/functions")
        assert [f["name"] for f in listed.json()["functions"]] == ["f"]
        for path in ("/keys", "/audit"):
            refused = await bare(ember, node_headers(), "GET", path)
            assert refused.status_code == 403, refused.text
        records = (await ember.http.get("/audit")).json()["records"]
        assert ("node:peer-1", "POST", "/functions", 201) in [
            (r["key"], r["action"], r["resource"], r["status"]) for r in records]

    serve(tmp_path / "home", scenario)


def test_a_wrong_credential_or_one_without_the_node_header_is_refused(
        tmp_path: Path) -> None:
    other_master = base64.b64encode(os.urandom(32)).decode()
    token = derive_credential(base64.b64decode(MASTER))

    async def scenario(ember: Ember) -> None:
        attempts = {
            "another master key": node_headers(other_master),
            "no node header": node_headers(node=None),
            "a node header that is no node id": node_headers(node="Not A Node!"),
            "an empty node header": node_headers(node=""),
            "the credential cut short": {"Authorization": f"Bearer {token[:-1]}",
                                         NODE_HEADER: "peer-1"},
        }
        for what, headers in attempts.items():
            refused = await bare(ember, headers, "GET", "/functions")
            assert refused.status_code == 401, what
            assert refused.json()["error"]["code"] == "Unauthorized", what
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="ember"'
            assert token not in refused.text  # never echoed
        # The node header beside an API key changes nothing: the key is who calls.
        keyed = await ember.http.get("/functions", headers={NODE_HEADER: "peer-1"})
        assert keyed.status_code == 200
        # A node's credential is not a key to log in to the console with.
        login = await bare(ember, {}, "POST", "/console/session", json={"key": token})
        assert login.status_code == 401, login.text
        assert token not in repr(ember.services.peers)
        assert token not in repr(ember.services.peers.credential)  # type: ignore[union-attr]

    serve(tmp_path / "home", scenario)


def _node(node_id: str, address: str, state: str = ALIVE, this: bool = False) -> Node:
    now = time.time()
    return Node(node_id, address, "0", state, now, now, {}, {}, this)


def test_fan_out_marks_each_answer_with_its_node_and_lists_the_others_unreachable(
        tmp_path: Path) -> None:
    hanging = socket.socket()  # accepts connections (the kernel's backlog), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    hung = f"http://127.0.0.1:{hanging.getsockname()[1]}"
    closed = f"http://127.0.0.1:{free_port()}"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("f", "def handler(e, c):\n    print('hello', e)\n")
        assert (await ember.invoke("f", 1)).status_code == 200
        async with ember.served() as live:
            nodes = [
                _node("asker", "http://127.0.0.1:1", this=True),
                _node("live", str(live.base_url)),
                _node("hung", hung),
                _node("refused", closed),
                _node("gone", closed, state=DEAD),
                _node("left", closed, state=STOPPED),
            ]
            peers = PeerClient(NodeCredential("asker", base64.b64decode(MASTER)),
                               lambda: nodes, timeout_s=0.5)
            try:
                out = await peers.fan_out("/functions/f/logs", {"limit": 10})
                # Asked with the marker, the live node answered with its own lines only.
                plain = await peers.request(nodes[1], "GET", "/functions/f/logs",
                                            headers={SCOPE_HEADER: "node"})
            finally:
                await peers.close()
        assert out.nodes == ["live"]
        assert out.unreachable == ["gone", "hung", "refused"]
        body = out.answers[0].body
        assert [line["line"] for line in body["logs"]] == ["hello 1"]
        assert body["nodes"] == [ember.services.nodes.id] and body["unreachable"] == []
        assert plain.status_code == 200 and plain.json() == body

    try:
        serve(tmp_path / "home", scenario)
    finally:
        hanging.close()
