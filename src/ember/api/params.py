"""Path, query and header parameters the routes share, with what the OpenAPI document says
they accept.

Names and cursors carry their pattern in the document only: the services check them
(a name that cannot exist is not found, one that cannot be created is refused with a
message that states the rule), so FastAPI does not check them again with its own words.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query

from ember.api.schemas import NAME_PATTERN, QUALIFIER_PATTERN
from ember.observability.cluster import NODE_CURSOR_PATTERN

# next_cursor of the function, task and dead-letter lists: unpadded URL-safe base64.
# Empty is the same as none: the first page.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{0,1024}$"


def _name(what: str) -> object:
    return Path(description=f"the {what}'s name", json_schema_extra={"pattern": NAME_PATTERN})


FunctionName = Annotated[str, _name("function")]
AliasName = Annotated[str, _name("alias")]
TriggerName = Annotated[str, _name("trigger")]
LayerName = Annotated[str, _name("layer")]

Cursor = Annotated[str | None, Query(
    description="next_cursor of an earlier answer", json_schema_extra={"pattern": CURSOR_PATTERN},
)]
# next_cursor of logs and invocation records: a position in one node's list, or in a
# cluster's (ember.observability.cluster).
LogCursor = Annotated[str | None, Query(
    description="next_cursor of an earlier answer",
    json_schema_extra={"pattern": NODE_CURSOR_PATTERN},
)]
Qualifier = Annotated[str | None, Query(
    description="latest, a version or an alias", json_schema_extra={"pattern": QUALIFIER_PATTERN},
)]
InvocationType = Annotated[str, Header(
    description="sync (answer when done) or async (202 once queued)",
    json_schema_extra={"enum": ["sync", "async"]},
)]
IdempotencyKey = Annotated[str | None, Header(
    description="async: the same key within 24 h returns the first task",
    json_schema_extra={"minLength": 1, "maxLength": 256},
)]
