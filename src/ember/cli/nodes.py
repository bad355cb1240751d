"""``ember node``: the servers of the cluster."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from ember.api.schemas import NodeOut
from ember.cli.common import Session, command
from ember.cli.render import _cells, _table, when

app = typer.Typer(help="The servers of the cluster: which are alive, their load.")


@command(app, "list")
def list_(session: Session) -> None:
    """List nodes: id, address, state (alive, draining, drained, dead, stopped), version,
    last heartbeat, instances, work in flight, trigger leases."""
    found = session.client.list_nodes()
    table: Table = _table("ID", "ADDRESS", "STATE", "VERSION", "STARTED", "HEARTBEAT",
                          "INSTANCES", "IN FLIGHT", "ASYNC", "LEASES")
    for node in found.nodes:
        table.add_row(*_cells(node.id + (" (this)" if node.this else ""), node.address,
                              node.state, node.version, when(node.started_at),
                              when(node.heartbeat_at), _instances(node),
                              *(str(node.load.get(k, 0)) for k in ("in_flight", "async",
                                                                    "leases"))))
    session.output.show(found, table)


def _instances(node: NodeOut) -> str:
    counts = node.load.get("instances") or {}
    total = sum(int(v) for v in counts.values()) if isinstance(counts, dict) else 0
    return f"{total}/{node.capacity.get('max_instances', '?')}"


@command(app, "drain")
def drain(session: Session,
          node: str = typer.Argument(..., help="the node's id (`ember node list`)"),
          wait: bool = typer.Option(False, "--wait",
                                    help="return once nothing is left on the node")) -> None:
    """Take a node out of service: it starts no new work, hands its trigger leases to the
    other nodes and finishes what it runs; `drained` means it can be stopped safely."""
    shown = session.client.drain_node(node)
    if wait and shown.state == "draining":
        with session.output.err.status(f"waiting for node {node} to drain"):
            while shown.state == "draining":
                time.sleep(0.5)
                shown = next((n for n in session.client.list_nodes().nodes if n.id == node),
                             shown)
    session.output.show(shown, f"node {node}: {shown.state}")


@command(app, "undrain")
def undrain(session: Session,
            node: str = typer.Argument(..., help="the node's id")) -> None:
    """Put a draining node back in service."""
    shown = session.client.undrain_node(node)
    session.output.show(shown, f"node {node}: {shown.state}")
