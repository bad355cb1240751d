"""Every error Ember reports, each with a stable code and one HTTP status.

The API, the SDK and the CLI show these the same way: the API answers
``{"error": {"code", "message", "details"}}``, the SDK raises the class registered for the
code, the CLI prints code and message.

    EmberError                      500  Internal
    ├── InvalidRequest              400
    │   ├── MethodNotAllowed        405  a route or an HTTP trigger does not take this method
    │   ├── InvalidSpec             400  a field of a spec or request is wrong
    │   │   └── InvalidPolicy       422  a provisioned capacity policy is wrong
    │   ├── InvalidCode             400  the code archive is unsafe or unreadable
    │   └── InvalidPayload          400  an invocation payload cannot be read
    ├── Unauthorized                401  an API key (or a trigger's key) is missing or wrong
    ├── Forbidden                   403  the key may not do this; a cross-site browser request
    ├── NotFound                    404
    │   ├── FunctionNotFound
    │   ├── VersionNotFound
    │   ├── AliasNotFound
    │   ├── TaskNotFound
    │   ├── DeadLetterNotFound
    │   ├── TriggerNotFound
    │   ├── LayerNotFound           a layer, or one version of it
    │   ├── BuildNotFound           a dependency build
    │   ├── WorkflowNotFound        a workflow, or one revision of it
    │   ├── KeyNotFound             an API key
    │   ├── ExecutionNotFound       a workflow execution
    │   ├── SecretNotFound          a secret of functions
    │   ├── ProvisionedNotFound     no provisioned capacity at a qualifier
    │   └── NodeNotFound            a node of the cluster
    ├── Conflict                    409  the resource exists or is held by another
    │   └── FunctionDisabled        409  invocations are refused while disabled
    ├── PayloadTooLarge             413
    ├── BuildFailed                 422  the code's requirements.txt could not be installed
    ├── TooManyRequests             429  concurrency or queue limits reached
    ├── ServiceUnavailable          503  the platform is shutting down or not ready
    └── InvocationFailed            502  the function ran and did not return a result
        ├── FunctionError           502  the handler raised
        ├── InitError               502  the initializer or the import of the handler failed
        ├── InstanceCrashed         502  the instance process died
        ├── FunctionOutOfMemory     502  the instance went over its memory limit
        └── FunctionTimeout         504  the invocation ran past timeout_s
"""

from __future__ import annotations

from typing import Any, ClassVar


class EmberError(Exception):
    """Base of every Ember error: a stable ``code``, an HTTP status, a message and details."""

    code: ClassVar[str] = "Internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        # Response headers that belong with this error (e.g. the request id of an invocation).
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidRequest(EmberError):
    code = "InvalidRequest"
    http_status = 400


class MethodNotAllowed(InvalidRequest):
    code = "MethodNotAllowed"
    http_status = 405


class InvalidSpec(InvalidRequest):
    code = "InvalidSpec"


class InvalidPolicy(InvalidSpec):
    """A provisioned capacity policy is wrong (422, as scaling APIs answer it)."""

    code = "InvalidPolicy"
    http_status = 422


class InvalidCode(InvalidRequest):
    code = "InvalidCode"


class InvalidPayload(InvalidRequest):
    code = "InvalidPayload"


class Unauthorized(EmberError):
    code = "Unauthorized"
    http_status = 401


class Forbidden(EmberError):
    code = "Forbidden"
    http_status = 403


class NotFound(EmberError):
    code = "NotFound"
    http_status = 404


class FunctionNotFound(NotFound):
    code = "FunctionNotFound"


class VersionNotFound(NotFound):
    code = "VersionNotFound"


class AliasNotFound(NotFound):
    code = "AliasNotFound"


class TaskNotFound(NotFound):
    code = "TaskNotFound"


class DeadLetterNotFound(NotFound):
    code = "DeadLetterNotFound"


class TriggerNotFound(NotFound):
    code = "TriggerNotFound"


class LayerNotFound(NotFound):
    code = "LayerNotFound"


class BuildNotFound(NotFound):
    code = "BuildNotFound"


class WorkflowNotFound(NotFound):
    code = "WorkflowNotFound"


class KeyNotFound(NotFound):
    code = "KeyNotFound"


class ExecutionNotFound(NotFound):
    code = "ExecutionNotFound"


class SecretNotFound(NotFound):
    code = "SecretNotFound"


class ProvisionedNotFound(NotFound):
    code = "ProvisionedNotFound"


class NodeNotFound(NotFound):
    code = "NodeNotFound"


class Conflict(EmberError):
    code = "Conflict"
    http_status = 409


class FunctionDisabled(Conflict):
    code = "FunctionDisabled"


class PayloadTooLarge(EmberError):
    code = "PayloadTooLarge"
    http_status = 413


class BuildFailed(EmberError):
    """Installing a requirements.txt failed; ``details`` name the build (``build_id``) and
    hold the end of its log (``log_tail``)."""

    code = "BuildFailed"
    http_status = 422


class TooManyRequests(EmberError):
    code = "TooManyRequests"
    http_status = 429


class ServiceUnavailable(EmberError):
    code = "ServiceUnavailable"
    http_status = 503


class InvocationFailed(EmberError):
    code = "InvocationFailed"
    http_status = 502


class FunctionError(InvocationFailed):
    code = "FunctionError"


class InitError(InvocationFailed):
    code = "InitError"


class InstanceCrashed(InvocationFailed):
    code = "InstanceCrashed"


class FunctionOutOfMemory(InvocationFailed):
    code = "FunctionOutOfMemory"


class FunctionTimeout(InvocationFailed):
    code = "FunctionTimeout"
    http_status = 504


def _all_subclasses(cls: type[EmberError]) -> list[type[EmberError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[EmberError]] = {c.code: c for c in _all_subclasses(EmberError)}


def from_dict(body: dict[str, Any], http_status: int | None = None) -> EmberError:
    """Rebuild the error an API answer describes; an unknown code keeps its text."""
    code = str(body.get("code", "Internal"))
    cls = ERRORS_BY_CODE.get(code)
    message = str(body.get("message", ""))
    details = body.get("details") or {}
    if cls is None:
        err = EmberError(message, details)
        err.code = code  # type: ignore[misc]
        if http_status is not None:
            err.http_status = http_status  # type: ignore[misc]
        return err
    return cls(message, details)
