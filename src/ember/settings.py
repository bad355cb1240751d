"""Typed settings of an Ember server, read from the environment (``EMBER_*``) and CLI flags.

Only the composition root (``bootstrap.py``) and the CLI entry that starts the server read
these; every other component receives what it needs through its constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Server settings. Each field can be set as ``EMBER_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="EMBER_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".ember"), description="data directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1",
        description="host names served, comma-separated (* for any): others are refused, "
                    "so that a web page cannot reach Ember through DNS rebinding",
    )
    cors_origins: str = Field(
        default="", description="origins whose pages may call the API (CORS), comma-separated",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="the admin API key; when unset, the first start makes one "
                                  "and writes it to <home>/admin.key")
    audit_retention_s: float = Field(
        default=90 * 24 * 3600, gt=0, description="how long the audit of changes is kept")
    node_id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="this server's node id; kept in <home>/node.id when unset")
    node_address: str | None = Field(
        default=None, max_length=256,
        description="the URL other nodes reach this one at; this server's own URL when unset")
    node_heartbeat_s: float = Field(
        default=2.0, gt=0, le=60, description="how often this node says it is alive")
    node_dead_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="a node silent this long is dead (at least twice the heartbeat)")
    lease_beat_s: float = Field(
        default=1.0, gt=0, le=10,
        description="how often a node checks its trigger leases and takes free ones "
                    "(PostgreSQL): a dead node's triggers run elsewhere within a few beats")
    console_session_s: float = Field(
        default=12 * 3600, gt=0, le=30 * 86400,
        description="how long a web console login lasts (never beyond its key's expiry)")
    tls_cert: Path | None = Field(default=None, description="TLS certificate (PEM) to serve")
    tls_key: Path | None = Field(default=None, description="TLS private key (PEM)")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite in $EMBER_HOME when unset"
    )
    artifact_store: Literal["auto", "filesystem", "database"] = Field(
        default="auto",
        description="where code and layer zips are kept: database (in the metadata "
                    "database, for every node sharing it; each node caches them in its "
                    "home), filesystem (in $EMBER_HOME only), or auto (database on "
                    "PostgreSQL, filesystem on SQLite)",
    )
    max_code_mb: float = Field(default=50, gt=0, le=1024, description="largest zipped upload")
    max_unpacked_mb: float = Field(default=500, gt=0, le=8192)
    max_code_entries: int = Field(default=10_000, ge=1)
    max_sync_payload_mb: float = Field(default=6, gt=0, le=100)
    max_async_payload_kb: float = Field(default=256, gt=0, le=10240)
    zygote: bool = Field(default=True, description="fork instances from a warm zygote")
    sandbox: Literal["auto", "bubblewrap", "process"] = Field(
        default="auto",
        description="what isolates instances: bubblewrap (namespaces: instances see only "
                    "their code, the runtime and a private /tmp), process (limits only, for "
                    "development), or auto (bubblewrap where it works, else process with a "
                    "warning)",
    )
    spare_instances: int = Field(
        default=1, ge=0, le=1, description="processes kept prepared for the next cold start"
    )
    max_instances: int = Field(default=200, ge=1, le=10_000, description="instances per server")
    queue_depth: int = Field(default=100, ge=0, description="waiting invocations per version")
    queue_wait_s: float = Field(default=10.0, ge=0, description="longest wait for an instance")
    queue_url: str | None = Field(
        default=None, description="redis://HOST:PORT/DB for Redis streams; embedded when unset"
    )
    queue_prefix: str = Field(
        default="ember", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="prefix of every Redis key, to share one Redis between installations",
    )
    async_concurrency: int = Field(default=32, ge=1, le=10_000)
    async_lease_s: float = Field(default=30, ge=1, le=3600)
    async_retry_delay_s: float = Field(
        default=1.0, ge=0, le=3600, description="first delay after a function error, doubled"
    )
    async_system_delay_s: float = Field(
        default=1.0, ge=0, le=3600, description="first delay after a system error, doubled"
    )
    task_retention_s: float = Field(
        default=7 * 24 * 3600, gt=0,
        description="how long finished async tasks and dead letters are kept",
    )
    workflow_event_retention_s: float = Field(
        default=3600, ge=0, le=7 * 24 * 3600,
        description="how long an event no workflow execution took waits for a listen",
    )
    execution_retention_s: float = Field(
        default=7 * 24 * 3600, gt=0,
        description="how long finished workflow executions are kept",
    )
    build_timeout_s: float = Field(
        default=600, gt=0, le=3600,
        description="longest pip install of a function's requirements.txt",
    )
    stats_retention_s: float = Field(
        default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600,
        description="how long invocation records are kept: the statistics, their time series "
        "and the invocation lists read them (one row an invocation, ~150 bytes)",
    )
    log_retention: int = Field(default=10_000, ge=100, description="log lines kept per function")
    log_level: str = "info"
    access_log: bool = Field(
        default=False,
        description="log every HTTP request (uvicorn's access log); invocations are recorded "
        "either way (stats, invocation records, audit of changes)",
    )
    master_key: SecretStr | None = Field(
        default=None, description="base64 of 32 bytes: the key secrets are encrypted with; "
        "when unset, the one in <home>/master.key (made with mode 0600 at first start)",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (EMBER_TLS_CERT, "
                             "EMBER_TLS_KEY) or neither")
        return self

    def host_list(self) -> list[str]:
        """``allowed_hosts`` as a list, and the host name of ``node_address``: the other
        nodes call this one there."""
        hosts = [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        if self.node_address:
            from urllib.parse import urlsplit

            node_host = urlsplit(self.node_address).hostname
            if node_host and node_host not in hosts:
                hosts.append(node_host)
        return hosts

    def origin_list(self) -> list[str]:
        """``cors_origins`` as a list."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        from ember.secrets.crypto import parse_master_key

        parse_master_key(value.get_secret_value(), "EMBER_MASTER_KEY")  # names what is wrong
        return value

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # Users write the URL their other tools accept; Ember talks to PostgreSQL via psycopg 3.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith(("sqlite", "postgresql+psycopg")):
            raise ValueError(
                f"EMBER_DATABASE_URL {value!r} is not supported: use sqlite:///PATH or "
                "postgresql://USER@HOST:PORT/DB"
            )
        return value

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"EMBER_QUEUE_URL {value!r} is not supported: use redis://HOST:PORT/DB, or "
                "leave it unset for the embedded queue"
            )
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ember.db'}"
