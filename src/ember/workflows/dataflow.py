"""The DSL's data flow, as pure functions the executor calls at each stage.

Order (dsl.md, *Data Flow*): the workflow's raw input goes through the workflow's
``input.from``; each task then evaluates ``if`` on its raw input (skipped: the raw input is
its output), transforms it with ``input.from`` (the result is ``$input``), runs, transforms
its raw output with ``output.as`` (the result is ``$output`` and the next task's raw input)
and replaces the context with ``export.as`` (default: the context unchanged); the last
task's output goes through the workflow's ``output.as``. Absent transformations are the
identity, and the value is passed through untouched (a :class:`RawJson` stays encoded).

Each stage binds the arguments the DSL's table gives it (*Runtime expression arguments*);
an expression that uses another fails with the ``expression`` error. ``$input`` in ``if``
is the raw task input, since ``if`` runs before ``input.from`` (dsl-reference.md, *Task*).
The initial ``$context`` is the caller's: :class:`Scope` starts from ``{}`` (dsl.md's text
makes the transformed workflow input the first ``$input``; its diagram also draws it as the
initial ``$context``; pass ``context=`` to follow the diagram).

``input.schema`` validates the raw input (before ``input.from``), ``output.schema`` the
transformed output and ``export.schema`` the new context, with JSON Schema (draft 2020-12,
the ``jsonschema`` library); a value that does not match fails with the ``validation`` error
at ``…/input``, ``…/output`` or ``…/export``. Not done here: ``$authorization``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from ember.errors import InvalidSpec
from ember.workflows.errors import VALIDATION, WorkflowError
from ember.workflows.expressions import (
    RawJson,
    check_template,
    compile_expression,
    evaluate,
    evaluate_template,
    runtime_descriptor,
)

_NOT_SET = object()


@dataclass(frozen=True, slots=True)
class Scope:
    """The arguments of an execution's expressions at one point of its run.

    ``workflow`` is ``$workflow`` (``workflow_descriptor()``), ``task`` is ``$task``
    (``task_descriptor()``, None outside a task), ``context`` is ``$context``;
    ``variables`` holds the ``for`` and ``catch`` variables in scope (``item`` → value).
    Immutable: :meth:`entering`, :meth:`with_context` and :meth:`with_variables` return new
    scopes.
    """

    workflow: Mapping[str, Any] | RawJson
    context: Any = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Any] = field(default_factory=runtime_descriptor)
    task: Mapping[str, Any] | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)

    def entering(self, task: Mapping[str, Any]) -> Scope:
        """This scope with ``task`` as ``$task``."""
        return replace(self, task=task)

    def with_context(self, context: Any) -> Scope:
        """This scope with ``context`` as ``$context``."""
        return replace(self, context=context)

    def with_variables(self, **variables: Any) -> Scope:
        """This scope with ``variables`` (``item=…, index=…``) added to those in scope."""
        return replace(self, variables={**self.variables, **variables})

    def reference(self) -> str:
        """The current task's reference (``/do/1/charge``), ``""`` at the workflow level."""
        return str(self.task["reference"]) if self.task is not None else ""

    def _base(self) -> dict[str, Any]:
        variables = dict(self.variables)
        variables.update(secrets=self.secrets, workflow=self.workflow, runtime=self.runtime)
        return variables

    def _task(self) -> dict[str, Any]:
        variables = self._base()
        variables["context"] = self.context
        if self.task is not None:
            variables["task"] = self.task
        return variables

    def definition_variables(self, transformed_input: Any) -> dict[str, Any]:
        """The arguments of the task definition's own expressions (``with``, ``set``,
        ``when`` …): ``$context``, ``$input``, ``$secrets``, ``$task``, ``$workflow``,
        ``$runtime``. Evaluate them on ``transformed_input``."""
        variables = self._task()
        variables["input"] = transformed_input
        return variables


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a task hands on: its transformed ``output`` (the next task's raw input), the
    ``context`` after ``export.as``, and whether ``if`` skipped it."""

    output: Any
    context: Any
    skipped: bool = False


def transform(value: Any, data: Any, variables: Mapping[str, Any], *, instance: str) -> Any:
    """Apply one ``from`` / ``as`` value to ``data``: a string is an expression (strict
    ``${ … }`` or a bare jq program), an object or array a template, anything else a
    constant."""
    if isinstance(value, str):
        compiled = compile_expression(value, implicit=True, variables=variables)
        return evaluate(compiled, data, variables, instance=instance)
    return evaluate_template(value, data, variables, instance=instance)


def _field(node: Mapping[str, Any], section: str, key: str) -> Any:
    part = node.get(section)
    if isinstance(part, Mapping):
        return part.get(key, _NOT_SET)
    return _NOT_SET


@lru_cache(maxsize=256)
def _validator(schema: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema))


def validate(node: Mapping[str, Any], section: str, value: Any, instance: str) -> None:
    """Check ``value`` against ``node``'s ``<section>.schema`` when it has one. Raises the
    ``validation`` WorkflowError naming the first mismatch and where in the value it is."""
    schema = _field(node, section, "schema")
    if not isinstance(schema, Mapping) or "document" not in schema:
        return
    if isinstance(value, RawJson):
        value = value.decode()
    validator = _validator(orjson.dumps(schema["document"], option=orjson.OPT_SORT_KEYS))
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "".join(f"[{p!r}]" for p in error.path) or "the value"
        raise WorkflowError(
            VALIDATION, detail=f"{section} does not match its schema at {where}: "
                               f"{error.message}", instance=instance)


def workflow_input(document: Mapping[str, Any], raw_input: Any, scope: Scope) -> Any:
    """The workflow's transformed input: ``input.from`` on the raw input (arguments
    ``$secrets``, ``$workflow``, ``$runtime``), once the raw input matches ``input.schema``."""
    validate(document, "input", raw_input, "/input")
    expression = _field(document, "input", "from")
    if expression is _NOT_SET:
        return raw_input
    return transform(expression, raw_input, scope._base(), instance="/input/from")


def should_run(task: Mapping[str, Any], raw_input: Any, scope: Scope) -> bool:
    """Whether ``task`` runs: its ``if`` on the raw task input, true unless the result is
    ``false`` or ``null`` (jq's truthiness). No ``if``: true."""
    condition = task.get("if", _NOT_SET)
    if condition is _NOT_SET:
        return True
    if isinstance(condition, str):
        variables = scope._task()
        variables["input"] = raw_input
        compiled = compile_expression(condition, implicit=True, variables=variables)
        condition = evaluate(compiled, raw_input, variables, instance=f"{scope.reference()}/if")
    return condition is not None and condition is not False


def task_input(task: Mapping[str, Any], raw_input: Any, scope: Scope) -> Any:
    """The task's transformed input (``$input``): ``input.from`` on the raw task input
    (arguments ``$context``, ``$secrets``, ``$task``, ``$workflow``, ``$runtime``), once the
    raw input matches ``input.schema``."""
    validate(task, "input", raw_input, f"{scope.reference()}/input")
    expression = _field(task, "input", "from")
    if expression is _NOT_SET:
        return raw_input
    instance = f"{scope.reference()}/input/from"
    return transform(expression, raw_input, scope._task(), instance=instance)


def task_output(
    task: Mapping[str, Any], raw_output: Any, transformed_input: Any, scope: Scope
) -> Any:
    """The task's transformed output (``$output``): ``output.as`` on the raw output, with
    ``$task.output`` set to the raw output; it must match ``output.schema``."""
    expression = _field(task, "output", "as")
    if expression is _NOT_SET:
        output = raw_output
    else:
        variables = _after_run(scope, raw_output, transformed_input)
        instance = f"{scope.reference()}/output/as"
        output = transform(expression, raw_output, variables, instance=instance)
    validate(task, "output", output, f"{scope.reference()}/output")
    return output


def export_context(
    task: Mapping[str, Any],
    transformed_output: Any,
    transformed_input: Any,
    scope: Scope,
    *,
    raw_output: Any = None,
) -> Any:
    """The new ``$context``: ``export.as`` on the transformed output (with ``$output``);
    without ``export.as``, the context unchanged."""
    expression = _field(task, "export", "as")
    if expression is _NOT_SET:
        return scope.context
    variables = _after_run(scope, raw_output, transformed_input)
    variables["output"] = transformed_output
    instance = f"{scope.reference()}/export/as"
    context = transform(expression, transformed_output, variables, instance=instance)
    validate(task, "export", context, f"{scope.reference()}/export")
    return context


def _after_run(scope: Scope, raw_output: Any, transformed_input: Any) -> dict[str, Any]:
    variables = scope.definition_variables(transformed_input)
    if scope.task is not None:
        variables["task"] = {**scope.task, "output": raw_output}
    return variables


def workflow_output(document: Mapping[str, Any], last_output: Any, scope: Scope) -> Any:
    """The workflow's output: ``output.as`` on the last task's transformed output
    (arguments ``$context``, ``$secrets``, ``$workflow``, ``$runtime``)."""
    expression = _field(document, "output", "as")
    if expression is _NOT_SET:
        output = last_output
    else:
        variables = scope._base()
        variables["context"] = scope.context
        output = transform(expression, last_output, variables, instance="/output/as")
    validate(document, "output", output, "/output")
    return output


def finish_task(
    task: Mapping[str, Any], raw_output: Any, transformed_input: Any, scope: Scope
) -> TaskResult:
    """After the task ran: ``output.as``, then ``export.as`` on its result."""
    output = task_output(task, raw_output, transformed_input, scope)
    context = export_context(task, output, transformed_input, scope, raw_output=raw_output)
    return TaskResult(output=output, context=context)


def run_task(
    task: Mapping[str, Any],
    raw_input: Any,
    scope: Scope,
    body: Callable[[Any, Scope], Any],
) -> TaskResult:
    """One task's whole data flow in the DSL's order, ``body`` running the task itself on
    its transformed input: ``if`` → ``input.from`` → ``body`` → ``output.as`` →
    ``export.as``. ``scope.task`` should describe ``task``. A skipped task outputs its raw
    input and leaves the context as it was."""
    if not should_run(task, raw_input, scope):
        return TaskResult(output=raw_input, context=scope.context, skipped=True)
    transformed_input = task_input(task, raw_input, scope)
    raw_output = body(transformed_input, scope)
    return finish_task(task, raw_output, transformed_input, scope)


def check_dataflow(node: Mapping[str, Any], path: str) -> None:
    """Compile the data-flow expressions of a task or of the document (``if``,
    ``input.from``, ``output.as``, ``export.as``), for deploy time.

    Raises ``InvalidSpec`` naming the expression and the field's path (``/do/0/a/if``).
    """
    fields = [("if", node.get("if", _NOT_SET))]
    fields += [
        (f"{section}/{key}", _field(node, section, key))
        for section, key in (("input", "from"), ("output", "as"), ("export", "as"))
    ]
    for name, value in fields:
        where = f"{path}/{name}"
        if isinstance(value, str):
            try:
                compile_expression(value, implicit=True)
            except InvalidSpec as exc:
                raise InvalidSpec(
                    f"{where}: {exc.message}", {**exc.details, "path": where}
                ) from exc
        elif value is not _NOT_SET:
            check_template(value, where)
