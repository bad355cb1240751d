"""Every error class has its own code, sits in errors.py's drawn hierarchy where it sits in
the code with the status drawn there, and comes back from an API answer as itself in the SDK."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest

from ember import errors
from ember.errors import ERRORS_BY_CODE, EmberError
from ember.sdk.results import error_from_response

CLASSES = sorted(
    (v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, EmberError)),
    key=lambda c: c.__name__,
)
_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?:\s+(?P<status>\d{3}))?")


@dataclass(frozen=True)
class Drawn:
    name: str
    parent: str | None
    status: int  # the status drawn on the line, else the parent's


def _drawn() -> dict[str, Drawn]:
    doc = errors.__doc__ or ""
    tree = [line[4:] for line in doc.splitlines() if line.startswith("    ")]
    drawn: dict[str, Drawn] = {}
    stack: list[Drawn] = []
    for line in tree:
        match = _LINE.match(line)
        assert match, line
        depth = len(match["indent"]) // 4
        del stack[depth:]
        parent = stack[-1] if stack else None
        status = int(match["status"]) if match["status"] else parent.status if parent else 0
        node = Drawn(match["name"], parent.name if parent else None, status)
        assert node.name not in drawn, f"{node.name} is drawn twice"
        drawn[node.name] = node
        stack.append(node)
    return drawn


def test_every_error_has_a_code_of_its_own() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(set(codes)) == len(codes), sorted(codes)
    assert set(ERRORS_BY_CODE.values()) == set(CLASSES)
    for cls in CLASSES:
        assert ERRORS_BY_CODE[cls.code] is cls
        assert cls.code == (cls.__name__ if cls is not EmberError else "Internal")
        assert "code" in vars(cls), f"{cls.__name__} inherits its parent's code"


def test_every_error_is_drawn_in_the_hierarchy_where_it_is() -> None:
    drawn = _drawn()
    assert set(drawn) == {cls.__name__ for cls in CLASSES}
    for cls in CLASSES:
        node = drawn[cls.__name__]
        parent = cls.__bases__[0]
        assert node.parent == (parent.__name__ if parent is not Exception else None), node
        assert node.status == cls.http_status, node
    root = [line for line in (errors.__doc__ or "").splitlines() if "EmberError " in line]
    assert root and root[0].split()[-1] == "Internal", "the root's code is drawn"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_sdk_raises_the_class_of_each_code(cls: type[EmberError]) -> None:
    body = {"error": {"code": cls.code, "message": "m", "details": {"k": 1}}}
    answer = httpx.Response(cls.http_status, json=body,
                            request=httpx.Request("GET", "http://ember/x"))
    err = error_from_response(answer)
    assert type(err) is cls
    assert (err.code, err.http_status, err.message, err.details) == (
        cls.code, cls.http_status, "m", {"k": 1}
    )
