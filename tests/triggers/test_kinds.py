"""The one registry of trigger source kinds: each kind declared once in model/trigger.py, and
what the validation, the supervisor and the CLI know of it derived from there."""

from __future__ import annotations

import inspect
from typing import Literal

import pytest
from pydantic import BaseModel

from ember.control.validation import UNION_TAGS
from ember.model.trigger import SOURCE_KINDS, SourceKind, _registry


def test_every_kind_has_a_runner_that_imports() -> None:
    import importlib

    assert set(SOURCE_KINDS) == UNION_TAGS
    for name, kind in SOURCE_KINDS.items():
        assert kind.name == name
        module, _, cls = kind.runner.partition(":")
        runner = getattr(importlib.import_module(module), cls)
        for method in ("start", "pause", "resume", "stop"):
            assert inspect.iscoroutinefunction(getattr(runner, method)), (name, method)
        assert kind.where in kind.model.model_fields, name


def test_a_kind_missing_from_the_registry_or_the_union_is_refused_at_import() -> None:
    kinds = list(SOURCE_KINDS.values())
    with pytest.raises(TypeError, match="same source models"):
        _registry(*kinds[1:])

    class PigeonSource(BaseModel):
        kind: Literal["pigeon"]
        loft: str

    extra = SourceKind(PigeonSource, "ember.triggers.pigeon:PigeonTriggerSource", "loft")
    assert extra.name == "pigeon"
    with pytest.raises(TypeError, match="same source models"):
        _registry(*kinds, extra)
