"""The sandbox's fields of a function config: validated at the edge, naming the field."""

from __future__ import annotations

import base64
from collections.abc import Callable

from tests.inprocess import Ember
from tests.secrets.test_api import _zip, fields

Run = Callable[..., None]


def test_sandbox_fields_are_validated_naming_the_field(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        code = {"zip": base64.b64encode(_zip()).decode()}
        bad = {"cpu": 0, "tmp_mb": 0, "network": "everywhere"}
        for field, value in bad.items():
            answer = await ember.http.post("/functions", json={
                "name": "f", "config": {field: value}, "code": code})
            assert answer.status_code == 400, answer.text
            assert list(fields(answer)) == [f"config.{field}"], answer.text
        answer = await ember.http.post("/functions", json={
            "name": "f", "code": code,
            "config": {"network": "none", "role": {"invoke": ["other"]}}})
        assert answer.status_code == 400, answer.text
        assert "outbound" in answer.text
        made = await ember.http.post("/functions", json={
            "name": "f", "code": code, "config": {"cpu": 0.5, "tmp_mb": 64, "network": "none"}})
        assert made.status_code == 201, made.text
        config = made.json()["config"]
        assert (config["cpu"], config["tmp_mb"], config["network"]) == (0.5, 64, "none")

    run(scenario)
