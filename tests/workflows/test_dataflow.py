"""The DSL's data flow: workflow input → (if → input.from → run → output.as → export.as)* →
workflow output, each stage with its arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ember.errors import InvalidSpec
from ember.workflows import errors as wf_errors
from ember.workflows.dataflow import (
    Scope,
    TaskResult,
    check_dataflow,
    export_context,
    finish_task,
    run_task,
    should_run,
    task_input,
    task_output,
    transform,
    workflow_input,
    workflow_output,
)
from ember.workflows.errors import WorkflowError
from ember.workflows.expressions import RawJson, task_descriptor, workflow_descriptor

STARTED = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)


def scope_for(document: dict[str, Any], raw_input: Any, **fields: Any) -> Scope:
    return Scope(workflow=workflow_descriptor("exec-1", document, raw_input, STARTED), **fields)


def entering(scope: Scope, name: str, index: int, task: dict[str, Any], raw: Any) -> Scope:
    return scope.entering(task_descriptor(name, f"/do/{index}/{name}", task, raw, STARTED))


# --- a worked example, in the order of dsl.md's Data Flow section -----------------------------

ORDER_PET: dict[str, Any] = {
    "document": {"dsl": "1.0.0", "namespace": "test", "name": "order-pet", "version": "0.1.0"},
    # 2. Transform workflow input: keep only the order.
    "input": {"from": "${ .order }"},
    "do": [
        {
            "getPet": {
                "call": "petstore",
                # 4. Transform task input: only the pet (a bare program, as the reference's
                # Input example writes it).
                "input": {"from": ".pet"},
                # 5. Transform task output: object form, a template.
                "output": {"as": {"petId": "${ .pet.id }", "name": "${ .pet.name }"}},
                # 7. Update the context: merge, as the reference's Export example does.
                "export": {"as": "$context + {pet: .}"},
            }
        },
        {
            "applyDiscount": {
                "if": '${ $context.pet.name == "rex" }',
                "set": {"discounted": True},
            }
        },
        {
            "confirm": {
                "call": "confirm",
                "input": {"from": "${ {petId, owner: $workflow.input.order.owner} }"},
                "output": {"as": "${ . + {taskInput: $input.petId, raw: $task.output} }"},
                "export": {"as": "${ $context + {confirmed: $output.confirmation} }"},
            }
        },
    ],
    # 10. Transform workflow output, with the context.
    "output": {"as": "${ {confirmation, pet: $context.pet.name, seen: $context.seen} }"},
}

RAW_INPUT = {"order": {"owner": "ana", "pet": {"id": 7, "kind": "dog"}}, "noise": [1, 2, 3]}


def test_worked_example_follows_the_spec_s_order() -> None:
    document = ORDER_PET
    scope = scope_for(document, RAW_INPUT, context={"seen": "ctx"})
    calls: list[tuple[str, Any, Any]] = []

    def pet_store(transformed_input: Any, current: Scope) -> Any:
        calls.append(("getPet", transformed_input, current.context))
        return {"pet": {"id": transformed_input["id"], "name": "milou", "secret": "x"}}

    def confirm(transformed_input: Any, current: Scope) -> Any:
        calls.append(("confirm", transformed_input, current.context))
        return {"confirmation": f"c-{transformed_input['petId']}"}

    def never(transformed_input: Any, current: Scope) -> Any:
        raise AssertionError("a skipped task must not run")

    bodies = {"getPet": pet_store, "applyDiscount": never, "confirm": confirm}

    data = workflow_input(document, RAW_INPUT, scope)
    assert data == {"owner": "ana", "pet": {"id": 7, "kind": "dog"}}

    results: list[TaskResult] = []
    for index, item in enumerate(document["do"]):
        ((name, task),) = item.items()
        task_scope = entering(scope, name, index, task, data)
        result = run_task(task, data, task_scope, bodies[name])
        results.append(result)
        scope = scope.with_context(result.context)
        data = result.output

    # getPet got only the pet, ran with the initial context, and its output was reshaped.
    assert calls[0] == ("getPet", {"id": 7, "kind": "dog"}, {"seen": "ctx"})
    assert results[0] == TaskResult(
        output={"petId": 7, "name": "milou"},
        context={"seen": "ctx", "pet": {"petId": 7, "name": "milou"}},
    )
    # applyDiscount was skipped: its raw input is its output, the context is unchanged.
    assert results[1] == TaskResult(
        output={"petId": 7, "name": "milou"}, context=results[0].context, skipped=True
    )
    # confirm saw the exported context; output.as saw $input and the raw $task.output.
    assert calls[1] == ("confirm", {"petId": 7, "owner": "ana"}, results[0].context)
    assert results[2].output == {
        "confirmation": "c-7",
        "taskInput": 7,
        "raw": {"confirmation": "c-7"},
    }
    assert results[2].context["confirmed"] == "c-7"

    assert workflow_output(document, data, scope) == {
        "confirmation": "c-7",
        "pet": "milou",
        "seen": "ctx",
    }


def test_absent_transformations_are_the_identity_and_keep_raw_json_encoded() -> None:
    raw = RawJson(b'{"a": 1}')
    scope = entering(scope_for({}, raw), "t", 0, {"call": "f"}, raw)
    task: dict[str, Any] = {"call": "f"}
    assert workflow_input({}, raw, scope) is raw
    assert should_run(task, raw, scope) is True
    assert task_input(task, raw, scope) is raw
    assert task_output(task, raw, raw, scope) is raw
    assert export_context(task, raw, raw, scope) is scope.context
    assert workflow_output({}, raw, scope) is raw
    # An expression over a RawJson value reads it without the caller decoding it.
    assert task_input({"input": {"from": "${ .a }"}}, raw, scope) == 1


# --- workflow input and output -------------------------------------------------------------


def test_workflow_input_sees_secrets_workflow_and_runtime_only() -> None:
    document: dict[str, Any] = {"input": {"from": "${ {id: $workflow.id, rt: $runtime.name} }"}}
    scope = scope_for(document, {}, secrets={"k": "v"})
    assert workflow_input(document, {}, scope) == {"id": "exec-1", "rt": "ember"}
    secret = {"input": {"from": "${ $secrets.k }"}}
    assert workflow_input(secret, {}, scope) == "v"
    with pytest.raises(WorkflowError, match=r"\$context is not available") as caught:
        workflow_input({"input": {"from": "${ $context }"}}, {}, scope)
    assert caught.value.instance == "/input/from"
    assert caught.value.type == wf_errors.EXPRESSION


def test_workflow_output_sees_the_context_but_not_input() -> None:
    scope = scope_for({}, {}, context={"total": 3})
    assert workflow_output({"output": {"as": "${ $context.total }"}}, {}, scope) == 3
    with pytest.raises(WorkflowError) as caught:
        workflow_output({"output": {"as": "${ $input }"}}, {}, scope)
    assert caught.value.instance == "/output/as"


# --- if ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "runs"),
    [
        ("${ .n > 1 }", True),
        ("${ .n > 5 }", False),
        ("${ null }", False),
        ("${ .missing }", False),
        ("${ 0 }", True),  # jq: only false and null are false
        ('${ "" }', True),
        ("${ [] }", True),
        ("${ empty }", False),  # no value is null
        (".n == 2", True),  # if is always an expression: the bare form is jq too
        (True, True),
        (False, False),
    ],
)
def test_if_uses_jq_truthiness(condition: Any, runs: bool) -> None:
    task = {"if": condition, "set": {}}
    scope = entering(scope_for({}, {}), "t", 0, task, {"n": 2})
    assert should_run(task, {"n": 2}, scope) is runs


def test_if_is_evaluated_on_the_raw_input_before_input_from() -> None:
    task: dict[str, Any] = {
        "if": "${ .raw and $input.raw and ($task.input.raw) and $context.ok }",
        "input": {"from": "${ {transformed: true} }"},
    }
    scope = entering(scope_for({}, {}, context={"ok": True}), "t", 0, task, {"raw": True})
    assert should_run(task, {"raw": True}, scope) is True


def test_a_skipped_task_passes_its_raw_input_on() -> None:
    task: dict[str, Any] = {
        "if": "${ false }",
        "input": {"from": '${ error("input.from must not run") }'},
        "export": {"as": '${ error("export.as must not run") }'},
    }
    scope = entering(scope_for({}, {}, context={"c": 1}), "t", 0, task, {"x": 1})
    result = run_task(task, {"x": 1}, scope, lambda _input, _scope: pytest.fail("ran"))
    assert result == TaskResult(output={"x": 1}, context={"c": 1}, skipped=True)


def test_if_failure_is_located_at_the_if() -> None:
    task = {"if": "${ .a.b }"}
    scope = entering(scope_for({}, {}), "check", 2, task, {"a": 1})
    with pytest.raises(WorkflowError) as caught:
        should_run(task, {"a": 1}, scope)
    assert caught.value.instance == "/do/2/check/if"
    assert caught.value.status == 400


# --- task input, output, export ----------------------------------------------------------------


def test_task_input_from_sees_context_and_task_but_not_input() -> None:
    task: dict[str, Any] = {"input": {"from": "${ {v: .v, c: $context.c, n: $task.name} }"}}
    scope = entering(scope_for({}, {}, context={"c": 2}), "t", 0, task, {"v": 1})
    assert task_input(task, {"v": 1}, scope) == {"v": 1, "c": 2, "n": "t"}
    template = {"input": {"from": {"wrapped": "${ .v }", "fixed": "x"}}}
    assert task_input(template, {"v": 1}, scope) == {"wrapped": 1, "fixed": "x"}
    with pytest.raises(WorkflowError) as caught:
        task_input({"input": {"from": "${ $input }"}}, {}, scope)
    assert caught.value.instance == "/do/0/t/input/from"


def test_output_as_sees_input_and_the_raw_output_in_task() -> None:
    task: dict[str, Any] = {"output": {"as": "${ {r: ., i: $input, t: $task.output.r} }"}}
    scope = entering(scope_for({}, {}), "t", 0, task, "raw-in")
    assert task_output(task, {"r": 1}, "in", scope) == {"r": {"r": 1}, "i": "in", "t": 1}
    with pytest.raises(WorkflowError, match=r"\$output is not available") as caught:
        task_output({"output": {"as": "${ $output }"}}, 1, 1, scope)
    assert caught.value.instance == "/do/0/t/output/as"


@pytest.mark.parametrize(
    ("export_as", "expected"),
    [
        ("$context + .", {"old": 1, "new": 2}),  # merge (the reference's example)
        (".", {"new": 2}),  # replace
        ("${ {old: $context.old, out: $output.new, in: $input} }", {"old": 1, "out": 2, "in": "i"}),
        ({"kept": "${ $context.old }", "fixed": True}, {"kept": 1, "fixed": True}),
    ],
)
def test_export_as_replaces_the_context(export_as: Any, expected: Any) -> None:
    task = {"export": {"as": export_as}}
    scope = entering(scope_for({}, {}, context={"old": 1}), "t", 0, task, {})
    assert export_context(task, {"new": 2}, "i", scope) == expected


def test_export_runs_on_the_transformed_output() -> None:
    task: dict[str, Any] = {
        "output": {"as": "${ {kept: .a} }"},
        "export": {"as": "${ {exported: ., raw: $task.output} }"},
    }
    scope = entering(scope_for({}, {}), "t", 0, task, {})
    result = finish_task(task, {"a": 1, "b": 2}, {}, scope)
    assert result == TaskResult(
        output={"kept": 1}, context={"exported": {"kept": 1}, "raw": {"a": 1, "b": 2}}
    )


def test_a_constant_transformation_is_kept_as_it_is() -> None:
    assert transform(5, {"x": 1}, {}, instance="/output/as") == 5
    assert transform(None, {"x": 1}, {}, instance="/output/as") is None


def test_scope_is_immutable() -> None:
    scope = scope_for({}, {}, context={"a": 1})
    task = task_descriptor("t", "/do/0/t", {}, None, STARTED)
    inside = scope.entering(task)
    assert scope.task is None and inside.task is task
    assert scope.reference() == "" and inside.reference() == "/do/0/t"
    assert inside.with_context({"b": 2}).context == {"b": 2}
    assert inside.context == {"a": 1}
    assert inside.definition_variables("in")["input"] == "in"


# --- deploy-time checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "path"),
    [
        ({"if": "${ .a | }"}, "/do/0/t/if"),
        ({"input": {"from": ".a |"}}, "/do/0/t/input/from"),
        ({"output": {"as": {"x": ["${ nope(1) }"]}}}, "/do/0/t/output/as/x/0"),
        ({"export": {"as": "$context +"}}, "/do/0/t/export/as"),
    ],
)
def test_check_dataflow_locates_bad_expressions(node: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        check_dataflow(node, "/do/0/t")
    assert caught.value.details["path"] == path
    assert caught.value.message.startswith(f"{path}: runtime expression")


def test_check_dataflow_accepts_the_worked_example() -> None:
    check_dataflow(ORDER_PET, "")
    for index, item in enumerate(ORDER_PET["do"]):
        ((name, task),) = item.items()
        check_dataflow(task, f"/do/{index}/{name}")
