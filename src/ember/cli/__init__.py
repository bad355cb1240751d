"""The ``ember`` command line, a thin layer of Typer and Rich over the Python SDK."""

from __future__ import annotations


def main() -> None:
    """Run the ``ember`` command."""
    from ember.cli.app import app

    app(prog_name="ember")
