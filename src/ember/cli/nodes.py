"""``ember node``: the servers of the cluster."""

from __future__ import annotations

import typer
from rich.table import Table

from ember.cli.common import Session, command
from ember.cli.render import _cells, _table, when

app = typer.Typer(help="The servers of the cluster: which are alive, their load.")


@command(app, "list")
def list_(session: Session) -> None:
    """List nodes: id, address, state (alive, dead, stopped), version, last heartbeat,
    instances."""
    found = session.client.list_nodes()
    table: Table = _table("ID", "ADDRESS", "STATE", "VERSION", "STARTED", "HEARTBEAT",
                          "INSTANCES")
    for node in found.nodes:
        instances = sum(int(v) for v in node.load.values())
        table.add_row(*_cells(node.id + (" (this)" if node.this else ""), node.address,
                              node.state, node.version, when(node.started_at),
                              when(node.heartbeat_at),
                              f"{instances}/{node.capacity.get('max_instances', '?')}"))
    session.output.show(found, table)
