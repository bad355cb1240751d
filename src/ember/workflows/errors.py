"""Errors raised while a workflow runs, in the DSL's problem-details shape (RFC 7807).

These are workflow *faults*, not API errors: a task raises one, a ``try`` may catch it by
``type`` / ``status``, and an uncaught one becomes the execution's ``error``. They are kept
apart from ``ember.errors`` (whose classes answer an HTTP request); a document refused at
deploy raises ``ember.errors.InvalidSpec`` instead.

The standard types and their default statuses are the DSL reference's (*Standard Error
Types*); ``instance`` is a JSON Pointer to the node that raised the error
(``/do/1/charge/input/from``).
"""

from __future__ import annotations

from typing import Any

ERROR_TYPE_BASE = "https://serverlessworkflow.io/spec/1.0.0/errors/"

CONFIGURATION = ERROR_TYPE_BASE + "configuration"
VALIDATION = ERROR_TYPE_BASE + "validation"
EXPRESSION = ERROR_TYPE_BASE + "expression"
AUTHENTICATION = ERROR_TYPE_BASE + "authentication"
AUTHORIZATION = ERROR_TYPE_BASE + "authorization"
TIMEOUT = ERROR_TYPE_BASE + "timeout"
COMMUNICATION = ERROR_TYPE_BASE + "communication"
RUNTIME = ERROR_TYPE_BASE + "runtime"

# The status each standard type carries unless a better one is known.
DEFAULT_STATUS: dict[str, int] = {
    CONFIGURATION: 400,
    VALIDATION: 400,
    EXPRESSION: 400,
    AUTHENTICATION: 401,
    AUTHORIZATION: 403,
    TIMEOUT: 408,
    COMMUNICATION: 500,
    RUNTIME: 500,
}

_DEFAULT_TITLE: dict[str, str] = {
    CONFIGURATION: "Configuration Error",
    VALIDATION: "Validation Error",
    EXPRESSION: "Expression Error",
    AUTHENTICATION: "Authentication Error",
    AUTHORIZATION: "Authorization Error",
    TIMEOUT: "Timeout",
    COMMUNICATION: "Communication Error",
    RUNTIME: "Runtime Error",
}


class WorkflowError(Exception):
    """A workflow fault: ``type`` (a URI), ``status``, ``title``, ``detail``, ``instance``.

    ``status`` defaults to the standard type's status (500 for a type the DSL does not
    define) and ``title`` to the standard type's title.
    """

    def __init__(
        self,
        type: str,
        *,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        instance: str = "/",
    ) -> None:
        self.type = type
        self.status = status if status is not None else DEFAULT_STATUS.get(type, 500)
        self.title = title if title is not None else _DEFAULT_TITLE.get(type)
        self.detail = detail
        self.instance = instance
        super().__init__(self._summary())

    def _summary(self) -> str:
        text = f"{self.type} ({self.status}) at {self.instance}"
        return f"{text}: {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        """The problem details as JSON: ``type``, ``status``, ``instance``, and ``title`` and
        ``detail`` when set."""
        problem: dict[str, Any] = {"type": self.type, "status": self.status}
        if self.title is not None:
            problem["title"] = self.title
        if self.detail is not None:
            problem["detail"] = self.detail
        problem["instance"] = self.instance
        return problem

    @classmethod
    def from_dict(cls, problem: dict[str, Any]) -> WorkflowError:
        """Rebuild an error from ``to_dict()`` (or a ``raise`` task's ``error``) output."""
        return cls(
            str(problem["type"]),
            status=int(problem["status"]) if problem.get("status") is not None else None,
            title=problem.get("title"),
            detail=problem.get("detail"),
            instance=str(problem.get("instance", "/")),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkflowError) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.type, self.status, self.instance))
