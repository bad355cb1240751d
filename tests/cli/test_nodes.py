"""``ember node list`` against a real server: the one node, alive, in a table or JSON."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli


def test_node_list_shows_this_server_alive(cli: Cli) -> None:
    shown = cli.ok("node", "list").stdout
    assert "(this)" in shown and "alive" in shown and "ADDRESS" in shown
    answer = json.loads(cli.ok("--json", "node", "list").stdout)
    mine = [n for n in answer["nodes"] if n["this"]]
    assert len(mine) == 1 and mine[0]["state"] == "alive"
    assert answer["dead_after_s"] >= 2 * answer["heartbeat_s"]
