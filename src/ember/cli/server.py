"""``ember server``: run the control plane and the data plane in this process."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ember.cli.common import reporting
from ember.cli.render import Output

if TYPE_CHECKING:
    from ember.settings import Settings


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
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate, PEM (env EMBER_TLS_CERT).",
                                  show_default=False),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="TLS private key, PEM (env EMBER_TLS_KEY).",
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

    overrides: dict[str, Any] = {"host": host, "port": port, "home": home,
                                 "tls_cert": tls_cert, "tls_key": tls_key}
    with reporting(Output(json_mode=False)):
        try:
            settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise invalid_spec(field_errors(exc.errors())) from exc
        # Before anything in the home is touched: a second server on it would remove the
        # first one's instance socket.
        home_lock = lock_home(settings.home)
        services = build(settings)
        app = create_app(services)
    if services.new_admin_key is not None:
        # Made now, because the store held no key: shown this once.
        out = Output(json_mode=False).err
        out.print("[bold]Ember made its first API key (role admin)[/bold], saved to "
                  f"{settings.home / 'admin.key'} (mode 0600); it is shown only now:")
        out.print(services.new_admin_key, highlight=False, markup=False)
        out.print("the CLI and the SDK on this machine read it from there; elsewhere, set "
                  "EMBER_API_KEY, and make narrower keys with `ember key create`")
    with reporting(Output(json_mode=False)):
        sandbox, limits = services.launcher.choose_sandbox()
    err = Output(json_mode=False).err
    if services.launcher.isolation is None:
        err.print(f"[yellow]warning:[/yellow] {sandbox}", highlight=False)
    else:
        err.print(sandbox, highlight=False)
    err.print(limits, highlight=False)
    scheme = "https" if settings.tls_cert is not None else "http"
    shown = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    err.print(f"web console: {scheme}://{shown}:{settings.port}/console (log in with an API "
              "key)", highlight=False)
    for line in exposure_warnings(settings):
        Output(json_mode=False).err.print(f"[yellow]warning:[/yellow] {line}")
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    # Everything imported and built so far lives as long as the server: out of the
    # collector's way. A full collection otherwise walks those ~160k objects (50-100 ms
    # with the event loop stopped): the p99 of warm invokes under load was that pause.
    gc.collect()
    gc.freeze()
    try:
        # No access log unless asked: uvicorn formats its arguments on every response
        # even when the level filters the line out.
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                    access_log=settings.access_log, **tls)
    finally:
        home_lock.release()


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def exposure_warnings(settings: Settings) -> list[str]:
    """What to tell the operator of a server reachable beyond this machine."""
    if settings.host in _LOOPBACK or settings.host.startswith("127."):
        return []
    lines = [f"listening on {settings.host}: Ember is reachable from other machines"]
    if settings.tls_cert is None:
        lines.append("no TLS is configured (--tls-cert/--tls-key): requests and their "
                     "payloads travel in clear text")
    if all(h in _LOOPBACK or h.startswith("127.") for h in settings.host_list()):
        lines.append("only loopback host names are served: set EMBER_ALLOWED_HOSTS to the "
                     "names clients use to reach this server")
    return lines
