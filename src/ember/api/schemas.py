"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ember.errors import InvalidCode
from ember.model.function import Alias, AsyncConfig, Function, FunctionConfig, Version


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeIn(_In):
    """Code as a base64-encoded zip archive."""

    zip: str = Field(description="base64 of a zip archive of the code directory")

    def decode(self) -> bytes:
        try:
            return base64.b64decode(self.zip, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCode(
                "code.zip is not valid base64", {"field": "code.zip"}
            ) from exc


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same fields as ``model``, each optional, for merge-style updates."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        fields[field_name] = (
            info.annotation | None,  # type: ignore[operator]
            Field(default=None, alias=info.alias, description=info.description),
        )
    config = ConfigDict(extra="forbid", populate_by_name=True)
    return create_model(name, __config__=config, **fields)


FunctionConfigPatch = _partial(FunctionConfig, "FunctionConfigPatch")


class FunctionCreate(_In):
    name: str = Field(description="[A-Za-z][A-Za-z0-9_-]{0,63}")
    config: FunctionConfig = Field(default_factory=FunctionConfig)
    code: CodeIn


class FunctionPatch(_In):
    config: FunctionConfigPatch = Field(  # type: ignore[valid-type]
        description="fields to replace; the others keep their value"
    )


class PublishIn(_In):
    description: str = Field(default="", max_length=256)


class AliasIn(_In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: int = Field(ge=1)
    additional_version: int | None = Field(default=None, ge=1)
    weight: float | None = Field(default=None, gt=0, lt=1)
    description: str = Field(default="", max_length=256)
    async_: AsyncConfig | None = Field(
        default=None, alias="async",
        description="async settings for events sent to the alias; default: the version's",
    )


class CodeOut(BaseModel):
    sha256: str
    size: int


class FunctionOut(BaseModel):
    name: str
    state: Literal["enabled", "disabled"]
    async_state: Literal["running", "paused"]
    config: FunctionConfig
    code: CodeOut
    last_version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, f: Function) -> FunctionOut:
        return cls(
            name=f.name,
            state="enabled" if f.enabled else "disabled",
            async_state="paused" if f.async_paused else "running",
            config=f.config,
            code=CodeOut(sha256=f.code.sha256, size=f.code.size),
            last_version=f.last_version,
            created_at=f.created_at,
            updated_at=f.updated_at,
        )


class FunctionList(BaseModel):
    functions: list[FunctionOut]
    next_cursor: str | None


class VersionOut(BaseModel):
    function: str
    version: int
    description: str
    config: FunctionConfig
    code: CodeOut
    created_at: datetime

    @classmethod
    def of(cls, v: Version) -> VersionOut:
        return cls(
            function=v.function,
            version=v.number,
            description=v.description,
            config=v.config,
            code=CodeOut(sha256=v.code.sha256, size=v.code.size),
            created_at=v.created_at,
        )


class PublishOut(VersionOut):
    created: bool = Field(description="false when latest was unchanged and this version exists")


class VersionList(BaseModel):
    versions: list[VersionOut]


class AliasOut(BaseModel):
    function: str
    name: str
    version: int
    additional_version: int | None
    weight: float | None
    description: str
    async_: AsyncConfig | None = Field(alias="async")
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def of(cls, a: Alias) -> AliasOut:
        return cls(
            function=a.function,
            name=a.name,
            version=a.version,
            additional_version=a.split.version if a.split else None,
            weight=a.split.weight if a.split else None,
            description=a.description,
            async_=a.async_config,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class AliasList(BaseModel):
    aliases: list[AliasOut]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
