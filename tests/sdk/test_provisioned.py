"""Provisioned capacity through the SDK: set (models or mappings), get, list, delete, and
the errors a bad policy raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ember.client import Client, ProvisionedOut
from ember.errors import FunctionNotFound, InvalidPolicy, ProvisionedNotFound
from ember.model.scaling import ScheduledAction, TargetTracking
from tests.sdk.conftest import write_code


def test_set_get_list_and_delete_provisioned(client: Client, tmp_path: Path) -> None:
    client.create_function("prov", write_code(tmp_path / "src"))
    client.publish_version("prov")
    client.set_alias("prov", "live", 1)
    paris = timezone(timedelta(hours=1))
    stored = client.set_provisioned(
        "prov", "live", idle_freeze_s=300,
        schedules=[
            ScheduledAction(cron="0 8 * * 1-5", timezone="Europe/Paris", target=0),
            {"cron": "0  20 * * *", "target": 0, "start": datetime(2030, 1, 1, tzinfo=paris)},
        ],
        target_tracking={"target": 0.5, "max": 3},
    )
    assert isinstance(stored, ProvisionedOut)
    config = stored.config
    assert (stored.function, stored.qualifier, config.target, config.idle_freeze_s) == (
        "prov", "live", 0, 300)
    assert [s.cron for s in config.schedules] == ["0 8 * * 1-5", "0 20 * * *"]
    assert config.schedules[1].start == datetime(2029, 12, 31, 23, tzinfo=UTC)
    assert config.target_tracking == TargetTracking(target=0.5, max=3)
    assert stored.state.desired == 0 and stored.state.next_action_at is not None

    assert client.get_provisioned("prov", "live").config == config
    # The whole policy is replaced: read, change, send back.
    changed = client.set_provisioned(
        "prov", "live", **{**config.model_dump(), "target_tracking": None})
    assert changed.config.schedules == config.schedules
    assert changed.config.target_tracking is None
    client.set_provisioned("prov", 1, target=0)
    assert [p.qualifier for p in client.list_provisioned("prov")] == ["1", "live"]

    removed = client.delete_provisioned("prov", "live")
    assert removed.config == changed.config
    with pytest.raises(ProvisionedNotFound):
        client.get_provisioned("prov", "live")
    assert [p.qualifier for p in client.list_provisioned("prov")] == ["1"]
    assert client.get_provisioned("prov", "1").qualifier == "1"


def test_bad_policies_raise_naming_the_field(client: Client, tmp_path: Path) -> None:
    client.create_function("badprov", write_code(tmp_path / "src"))
    with pytest.raises(InvalidPolicy) as bad_cron:
        client.set_provisioned("badprov", schedules=[{"cron": "0 25 * * *", "target": 1}])
    assert [e["field"] for e in bad_cron.value.details["errors"]] == ["schedules[0].cron"]
    with pytest.raises(InvalidPolicy) as bad_range:
        client.set_provisioned("badprov", target_tracking={"min": 4, "max": 2})
    assert [e["field"] for e in bad_range.value.details["errors"]] == ["target_tracking.max"]
    with pytest.raises(InvalidPolicy) as no_alias:
        client.set_provisioned("badprov", "live", target=1)
    assert [e["field"] for e in no_alias.value.details["errors"]] == ["qualifier"]
    with pytest.raises(FunctionNotFound):
        client.set_provisioned("ghost", target=1)
    with pytest.raises(FunctionNotFound):
        client.list_provisioned("ghost")
    with pytest.raises(ProvisionedNotFound):
        client.delete_provisioned("badprov")
