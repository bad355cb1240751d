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


def test_node_drain_waits_until_drained_and_undrain_puts_it_back(cli: Cli) -> None:
    wait_until(lambda: "(this)" in cli.ok("node", "list").stdout, timeout=30,
               message="this server in ember node list")
    mine = next(n for n in json.loads(cli.ok("--json", "node", "list").stdout)["nodes"]
                if n["this"])
    try:
        drained = cli.ok("node", "drain", mine["id"], "--wait").stdout
        assert f"node {mine['id']}: drained" in drained
        listed = json.loads(cli.ok("--json", "node", "list").stdout)["nodes"]
        assert next(n for n in listed if n["id"] == mine["id"])["state"] == "drained"
    finally:
        back = json.loads(cli.ok("--json", "node", "undrain", mine["id"]).stdout)
    assert back["state"] == "alive"
    missing = cli.fails("node", "drain", "nowhere-1")
    assert "NodeNotFound" in missing.stderr and "ember node list" in missing.stderr


def test_trigger_list_names_each_trigger_s_node_when_they_run_on_several() -> None:
    from rich.console import Console

    from ember.api.schemas import TriggerOut
    from ember.cli.render import triggers_table

    def made(name: str, node: str | None) -> TriggerOut:
        return TriggerOut(name=name, function="f", qualifier="latest", state="enabled",
                          source={"kind": "timer"}, description="", created_at=0.0,
                          updated_at=0.0, status={"events": 1}, node=node)

    def shown(*triggers: TriggerOut) -> str:
        console = Console(width=200, record=True)
        console.print(triggers_table(triggers))
        return console.export_text()

    one_node = shown(made("t1", "a"), made("t2", "a"))
    assert "NODE" not in one_node
    cluster = shown(made("t1", "a"), made("t2", "b"), made("t3", None))
    assert "NODE" in cluster
    rows = {line.split()[0]: line.split() for line in cluster.splitlines()
            if line.split() and line.split()[0] in ("t1", "t2", "t3")}
    assert rows["t1"][4] == "a" and rows["t2"][4] == "b" and rows["t3"][4] == "—"
