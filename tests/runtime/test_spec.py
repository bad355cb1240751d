"""The init spec: one typed class on both sides of the process boundary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

from ember.model.function import FunctionConfig
from ember.pool.instance import InstanceSpec
from ember.runtime import protocol
from ember.runtime.spec import HealthCheck, InitSpec, StartupProbe


def _through_the_wire(spec: InitSpec) -> InitSpec:
    frame = protocol.encode({"t": protocol.INIT, "spec": spec.to_message()})
    message = protocol.decode(frame[4:])
    return InitSpec.from_message(message["spec"])


def test_a_full_spec_survives_msgpack() -> None:
    spec = InitSpec(
        function="shop", version="3", code_dir="/code", memory_mb=512, timeout_s=12.5,
        env={"A": "1", "EMBER_FUNCTION_NAME": "shop"}, layer_dirs=("/l1", "/l2"),
        kind="custom", handler="main.handler", app=None, command=("node", "server.js"),
        initializer=None, initializer_timeout_s=4.0, pre_stop=None, concurrency=8,
        startup_probe=StartupProbe(path="/ready", timeout_s=3.0),
        health_check=HealthCheck(path="/healthz", interval_s=0.5, timeout_s=1.0,
                                 failure_threshold=2),
    )
    assert _through_the_wire(spec) == spec
    assert all(f.name in spec.to_message() for f in dataclasses.fields(InitSpec))


def test_defaults_come_from_the_spec_itself() -> None:
    spec = InitSpec(function="f", version="latest", code_dir="/c", memory_mb=128, timeout_s=1)
    assert _through_the_wire(spec) == spec
    minimal = InitSpec.from_message({"function": "f", "version": "latest", "code_dir": "/c",
                                     "memory_mb": 128, "timeout_s": 1, "unknown": "ignored"})
    assert minimal == spec
    assert minimal.kind == "event" and minimal.concurrency == 1
    assert minimal.probe == StartupProbe() and minimal.health_check is None


def test_the_server_builds_the_spec_from_a_function_config(tmp_path: Path) -> None:
    config = FunctionConfig.model_validate({
        "kind": "custom", "command": ["./serve"], "concurrency": 4, "memory_mb": 1024,
        "environment": {"GREETING": "hi"},
        "startup_probe": {"path": "/ready"},
        "health_check": {"path": "/healthz", "failure_threshold": 5},
    })
    instance = InstanceSpec.from_config("shop", "2", tmp_path, config, (tmp_path / "layer",))
    spec = instance.to_runtime({"PATH": "/bin"})
    assert _through_the_wire(spec) == spec
    assert spec.command == ("./serve",) and spec.layer_dirs == (str(tmp_path / "layer"),)
    assert spec.env["GREETING"] == "hi" and spec.env["EMBER_FUNCTION_VERSION"] == "2"
    assert spec.env["PATH"] == "/bin"
    assert spec.startup_probe == StartupProbe(path="/ready", timeout_s=10.0)
    assert spec.health_check == HealthCheck(path="/healthz", failure_threshold=5)
    assert instance.init_timeout_s == config.initializer_timeout_s + 10.0 + 1.0


def test_pre_freeze_and_its_timeout_reach_the_instance(tmp_path: Path) -> None:
    config = FunctionConfig.model_validate({"pre_freeze": "db:close", "pre_freeze_timeout_s": 2.5})
    spec = _through_the_wire(InstanceSpec.from_config("shop", "1", tmp_path, config)
                             .to_runtime({}))
    assert (spec.pre_freeze, spec.pre_freeze_timeout_s) == ("db:close", 2.5)
    assert FunctionConfig().pre_freeze_timeout_s == InitSpec.pre_freeze_timeout_s == 5.0


@pytest.mark.parametrize(("config", "key"), [
    ({"pre_freeze": "not an entry"}, "pre_freeze"),
    ({"pre_freeze_timeout_s": 0}, "pre_freeze_timeout_s"),
    ({"pre_freeze_timeout_s": 901}, "pre_freeze_timeout_s"),
    ({"kind": "custom", "command": ["./serve"], "pre_freeze": "main.close"}, "pre_freeze"),
])
def test_a_bad_pre_freeze_is_refused_naming_it(config: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FunctionConfig.model_validate(config)
    assert key in str(caught.value)
