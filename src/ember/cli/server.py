"""``ember server``: run the control plane and the data plane in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ember.cli.common import reporting
from ember.cli.render import Output


def server(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (env EMBER_HOST; default 127.0.0.1).",
                                 show_default=False),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (env EMBER_PORT; default 8080).",
                                 show_default=False),
    ] = None,
    home: Annotated[
        Path | None, typer.Option(help="Data directory (env EMBER_HOME; default .ember).",
                                  show_default=False),
    ] = None,
) -> None:
    """Start an Ember server (settings from EMBER_* variables; these flags win)."""
    # The server stack is imported here, so that the other commands start fast.
    import uvicorn
    from pydantic import ValidationError

    from ember.api import create_app
    from ember.bootstrap import build, lock_home
    from ember.control.validation import field_errors, invalid_spec
    from ember.settings import Settings

    overrides: dict[str, Any] = {"host": host, "port": port, "home": home}
    with reporting(Output(json_mode=False)):
        try:
            settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise invalid_spec(field_errors(exc.errors())) from exc
        # Before anything in the home is touched: a second server on it would remove the
        # first one's instance socket.
        home_lock = lock_home(settings.home)
        app = create_app(build(settings))
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        home_lock.release()
