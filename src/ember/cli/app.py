"""The ``ember`` command: its groups and top-level commands, and the global options."""

from __future__ import annotations

import typer

from ember.cli import (
    aliases,
    builds,
    deploy,
    executions,
    functions,
    invoke,
    keys,
    layers,
    logs,
    nodes,
    scale,
    secrets,
    server,
    tasks,
    triggers,
    versions,
    workflows,
)
from ember.cli.common import GlobalOptions, JsonOption, UrlOption, command

app = typer.Typer(
    name="ember",
    help="Ember: a self-hosted serverless platform for Python functions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(ctx: typer.Context, url: UrlOption = None, json_output: JsonOption = False) -> None:
    # Options given before the command apply to it unless it repeats them.
    ctx.obj = GlobalOptions(url=url, json=json_output)


app.add_typer(functions.app, name="fn")
app.add_typer(versions.app, name="version")
app.add_typer(aliases.app, name="alias")
app.add_typer(tasks.task_app, name="task")
app.add_typer(tasks.dlq_app, name="dlq")
app.add_typer(triggers.app, name="trigger")
app.add_typer(layers.app, name="layer")
app.add_typer(builds.app, name="build")
app.add_typer(workflows.app, name="workflow")
app.add_typer(executions.app, name="execution")
app.add_typer(workflows.event_app, name="event")
app.add_typer(secrets.app, name="secret")
app.add_typer(keys.app, name="key")
app.add_typer(scale.app, name="scale")
app.add_typer(nodes.app, name="node")
command(app, "audit")(keys.audit)
command(app, "deploy")(deploy.deploy)
command(functions.app, "deploy")(deploy.deploy)
command(app, "invoke")(invoke.invoke)
command(app, "logs")(logs.logs)
command(app, "stats")(logs.stats)
command(functions.app, "invocations")(logs.invocations)
app.command("server")(server.server)
