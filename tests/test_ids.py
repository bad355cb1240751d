from __future__ import annotations

import uuid

from ember.ids import new_id


def test_ids_are_random_version_4_uuids_in_canonical_form() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
