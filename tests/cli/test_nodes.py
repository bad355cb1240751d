"""``ember node list`` against a real server: the one node, alive, in a table or JSON."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.waiting import wait_until


def test_node_list_shows_this_server_alive(cli: Cli) -> None:
    # On PostgreSQL every test starts with empty tables: the shared server's row comes back
    # with its next heartbeat (a node whose row was removed registers again).
    wait_until(lambda: "(this)" in cli.ok("node", "list").stdout, timeout=30,
               message="this server in ember node list")
    shown = cli.ok("node", "list").stdout
    assert "alive" in shown and "ADDRESS" in shown
    answer = json.loads(cli.ok("--json", "node", "list").stdout)
    mine = [n for n in answer["nodes"] if n["this"]]
    assert len(mine) == 1 and mine[0]["state"] == "alive"
    assert answer["dead_after_s"] >= 2 * answer["heartbeat_s"]
