"""Runtime expressions: jq through ${ }, the DSL's arguments, results, errors, templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ember import __version__
from ember.errors import InvalidSpec
from ember.workflows import errors as wf_errors
from ember.workflows.errors import WorkflowError
from ember.workflows.expressions import (
    RawJson,
    check_template,
    compile_expression,
    datetime_descriptor,
    evaluate,
    evaluate_template,
    is_expression,
    runtime_descriptor,
    task_descriptor,
    template_expressions,
    workflow_descriptor,
)

STARTED = datetime(2022, 1, 1, 8, 0, 0, 123000, tzinfo=UTC)
DEFINITION = {"document": {"dsl": "1.0.0", "name": "pets"}, "do": [{"getPet": {"call": "get"}}]}


def arguments(**overrides: Any) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "context": {"user": "ana"},
        "input": {"petId": 7},
        "output": {"pet": {"name": "milou"}},
        "secrets": {},
        "task": task_descriptor(
            "getPet", "/do/0/getPet", {"call": "get"}, {"raw": True}, STARTED, {"raw": "out"}
        ),
        "workflow": workflow_descriptor("exec-1", DEFINITION, {"order": 1}, STARTED),
        "runtime": runtime_descriptor(),
    }
    variables.update(overrides)
    return variables


# --- which strings are expressions -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${ .a }", True),
        ("${.a}", True),
        ("  ${ .a }  ", True),
        ("${\n  .a\n}", True),
        (".a", False),
        ("id-${ .id }", False),
        ("${ .a } tail", False),
        ("$context", False),
        (42, False),
        (None, False),
        ({"a": "${ .a }"}, False),
    ],
)
def test_is_expression_follows_strict_mode(value: object, expected: bool) -> None:
    assert is_expression(value) is expected


def test_a_bare_string_is_an_expression_only_when_implicit() -> None:
    with pytest.raises(InvalidSpec, match="not a runtime expression"):
        compile_expression(".order.pet")
    compiled = compile_expression(".order.pet", implicit=True)
    assert evaluate(compiled, {"order": {"pet": {"id": "x"}}}, {}) == {"id": "x"}
    # The DSL reference's own export example, written without ${ }.
    merged = compile_expression("$context+.", implicit=True)
    assert evaluate(merged, {"b": 2}, {"context": {"a": 1}}) == {"a": 1, "b": 2}


def test_compiled_expressions_are_cached() -> None:
    first = compile_expression("${ .cached | length }")
    second = compile_expression("  ${.cached | length}  ")
    assert first.program is second.program
    assert first.source != second.source


# --- jq basics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        ("${ . }", {"a": 1}, {"a": 1}),
        ("${ .items | map(.price) | add }", {"items": [{"price": 2}, {"price": 3}]}, 5),
        ("${ .a > 1 }", {"a": 2}, True),
        ('${ "Hello \\(.name)!" }', {"name": "ana"}, "Hello ana!"),
        ("${ {id: .x, n: (.y | length)} }", {"x": "k", "y": [1, 2]}, {"id": "k", "n": 2}),
        ("${ [.[] | select(. % 2 == 0)] }", [1, 2, 3, 4], [2, 4]),
        ("${ def twice: . * 2; .n | twice }", {"n": 21}, 42),
        ("${ .n # a comment\n}", {"n": 1}, 1),
        ("${ .missing }", {}, None),
        ("${ 100000000000000000000 }", None, 100000000000000000000),
    ],
)
def test_jq_programs(expression: str, data: Any, expected: Any) -> None:
    assert evaluate(expression, data, arguments()) == expected


def test_several_values_give_the_first_and_none_gives_null() -> None:
    assert evaluate("${ .[] }", [3, 4, 5], {}) == 3
    assert evaluate("${ empty }", {"a": 1}, {}) is None
    assert evaluate("${ .[] | select(. > 10) }", [1, 2], {}) is None


def test_raw_json_data_and_arguments_are_not_decoded_first() -> None:
    data = RawJson(b'{"order": {"total": 12.5}}')
    context = RawJson(b'{"discount": 2.5}')
    assert evaluate("${ .order.total - $context.discount }", data, {"context": context}) == 10
    assert data.decode() == {"order": {"total": 12.5}}


def test_integer_keys_and_big_integers_are_encoded() -> None:
    assert evaluate('${ .["1"] }', {1: "one"}, {}) == "one"
    assert evaluate("${ .n }", {"n": 2**70}, {}) == 2**70


# --- the DSL's arguments -------------------------------------------------------------------


def test_context_input_output_secrets() -> None:
    variables = arguments(secrets={"apiKey": "k"})
    assert evaluate("${ $context.user }", None, variables) == "ana"
    assert evaluate("${ $input.petId }", None, variables) == 7
    assert evaluate("${ $output.pet.name }", None, variables) == "milou"
    assert evaluate("${ $secrets.apiKey }", None, variables) == "k"
    assert evaluate("${ $secrets }", None, arguments()) == {}


def test_task_descriptor() -> None:
    task = evaluate("${ $task }", None, arguments())
    assert task == {
        "name": "getPet",
        "reference": "/do/0/getPet",
        "definition": {"call": "get"},
        "input": {"raw": True},
        "output": {"raw": "out"},
        "startedAt": {
            "iso8601": "2022-01-01T08:00:00.123Z",
            "epoch": {"seconds": 1641024000, "milliseconds": 1641024000123},
        },
    }


def test_workflow_descriptor() -> None:
    variables = arguments()
    assert evaluate("${ $workflow.id }", None, variables) == "exec-1"
    assert evaluate("${ $workflow.definition.document.name }", None, variables) == "pets"
    assert evaluate("${ $workflow.input }", None, variables) == {"order": 1}
    assert evaluate("${ $workflow.startedAt.epoch.seconds }", None, variables) == 1641024000


def test_runtime_descriptor() -> None:
    assert evaluate("${ $runtime | {name, version} }", None, arguments()) == {
        "name": "ember",
        "version": __version__,
    }


def test_datetime_descriptor_is_utc_whatever_the_zone() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2022, 1, 1, 9, 0, 0, 123456, tzinfo=paris)
    assert datetime_descriptor(moment) == {
        "iso8601": "2022-01-01T08:00:00.123Z",
        "epoch": {"seconds": 1641024000, "milliseconds": 1641024000123},
    }
    naive = datetime(2022, 1, 1, 8, 0, 0)
    assert datetime_descriptor(naive)["iso8601"] == "2022-01-01T08:00:00.000Z"


def test_only_the_arguments_an_expression_uses_are_bound() -> None:
    compiled = compile_expression("${ $context.a + $input.b + ($task | length) }")
    assert compiled.arguments == ("context", "input", "task")
    # Arguments that are not valid JSON are never encoded when the program does not use them.
    assert evaluate("${ .x }", {"x": 1}, {"workflow": object()}) == 1


def test_authorization_is_not_provided_and_refused_at_compile_time() -> None:
    with pytest.raises(InvalidSpec, match=r"\$authorization is not defined"):
        compile_expression("${ $authorization.scheme }")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("${ .a | }", "syntax error"),
        ("${ nosuchfunction(1) }", "nosuchfunction/1 is not defined"),
        ("${ $nope }", "$nope is not defined"),
        ("${ }", "is empty"),
    ],
)
def test_syntax_errors_name_the_expression_and_jq_s_message(text: str, reason: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        compile_expression(text)
    assert repr(text) in caught.value.message
    assert reason in caught.value.message
    assert caught.value.details["expression"] == text


def test_syntax_error_position_is_in_the_author_s_text() -> None:
    with pytest.raises(InvalidSpec, match="line 1, column 4"):
        compile_expression("${ .a | }")


def test_runtime_failure_is_an_expression_workflow_error_at_the_task() -> None:
    with pytest.raises(WorkflowError) as caught:
        evaluate("${ .a.b }", {"a": 5}, arguments())
    error = caught.value
    assert error.type == "https://serverlessworkflow.io/spec/1.0.0/errors/expression"
    assert error.status == 400
    assert error.instance == "/do/0/getPet"
    assert error.detail is not None
    assert "'${ .a.b }'" in error.detail
    assert "Cannot index number" in error.detail
    assert error.to_dict() == {
        "type": wf_errors.EXPRESSION,
        "status": 400,
        "title": "Expression Error",
        "detail": error.detail,
        "instance": "/do/0/getPet",
    }


def test_runtime_failure_instance_can_be_given_and_defaults_to_root() -> None:
    with pytest.raises(WorkflowError) as given:
        evaluate('${ error("boom") }', 1, arguments(), instance="/do/0/getPet/output/as")
    assert given.value.instance == "/do/0/getPet/output/as"
    assert "boom" in str(given.value.detail)
    with pytest.raises(WorkflowError) as root:
        evaluate("${ 1 / 0 }", 1, {})
    assert root.value.instance == "/"


def test_an_argument_not_available_here_is_an_expression_error() -> None:
    with pytest.raises(WorkflowError, match=r"\$output is not available here") as caught:
        evaluate("${ $output }", 1, {"context": {}})
    assert caught.value.type == wf_errors.EXPRESSION


def test_invalid_raw_json_is_an_expression_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        evaluate("${ . }", RawJson(b"{not json"), {})
    assert caught.value.type == wf_errors.EXPRESSION


def test_standard_error_types_and_default_statuses() -> None:
    expected = {
        "configuration": 400,
        "validation": 400,
        "expression": 400,
        "authentication": 401,
        "authorization": 403,
        "timeout": 408,
        "communication": 500,
        "runtime": 500,
    }
    for name, status in expected.items():
        uri = getattr(wf_errors, name.upper())
        assert uri == f"https://serverlessworkflow.io/spec/1.0.0/errors/{name}"
        assert WorkflowError(uri).status == status
    custom = WorkflowError("https://example.com/errors/out-of-stock", status=409, detail="no")
    assert custom.to_dict() == {
        "type": "https://example.com/errors/out-of-stock",
        "status": 409,
        "detail": "no",
        "instance": "/",
    }
    assert WorkflowError.from_dict(custom.to_dict()) == custom
    timeout = WorkflowError(wf_errors.TIMEOUT, instance="/do/1/wait")
    assert str(timeout) == f"{wf_errors.TIMEOUT} (408) at /do/1/wait"


# --- templates -----------------------------------------------------------------------------


def test_templates_evaluate_nested_expressions_and_keep_the_rest() -> None:
    template = {
        "method": "post",
        "endpoint": {"uri": '${ "https://pets.example/\\(.petId)" }'},
        "body": {
            "owner": "${ $context.user }",
            "tags": ["fixed", "${ .petId + 1 }", {"deep": ["${ $input.petId }"]}],
            "count": 3,
            "enabled": True,
            "nothing": None,
            "literal": "id-${ .petId }",
        },
        "${ .petId }": "keys are never evaluated",
    }
    rendered = evaluate_template(template, {"petId": 7}, arguments())
    assert rendered == {
        "method": "post",
        "endpoint": {"uri": "https://pets.example/7"},
        "body": {
            "owner": "ana",
            "tags": ["fixed", 8, {"deep": [7]}],
            "count": 3,
            "enabled": True,
            "nothing": None,
            "literal": "id-${ .petId }",
        },
        "${ .petId }": "keys are never evaluated",
    }
    assert template["body"]["owner"] == "${ $context.user }"  # type: ignore[index]


def test_a_template_without_expressions_is_returned_as_it_is() -> None:
    template = {"a": [1, {"b": "text"}], "c": None}
    assert evaluate_template(template, {}, {}) is template
    assert evaluate_template("${ .x }", {"x": 3}, {}) == 3


def test_template_failure_names_the_expression() -> None:
    with pytest.raises(WorkflowError, match=r"\$\{ \.a\.b \}") as caught:
        evaluate_template({"x": ["${ .a.b }"]}, {"a": 1}, arguments())
    assert caught.value.instance == "/do/0/getPet"


def test_check_template_locates_a_bad_expression_by_its_path() -> None:
    template = {"body": {"items": ["ok", "${ .a }", "${ .a | }"]}}
    assert list(template_expressions(template, "/do/0/t/with")) == [
        ("/do/0/t/with/body/items/1", "${ .a }"),
        ("/do/0/t/with/body/items/2", "${ .a | }"),
    ]
    with pytest.raises(InvalidSpec) as caught:
        check_template(template, "/do/0/t/with")
    assert caught.value.details["path"] == "/do/0/t/with/body/items/2"
    assert caught.value.message.startswith("/do/0/t/with/body/items/2: ")
    assert list(template_expressions({"a/b": {"c~d": "${ 1 }"}})) == [("/a~1b/c~0d", "${ 1 }")]


# -- for and catch variables ----------------------------------------------------------------


def test_for_and_catch_variables_are_bound_beside_the_arguments() -> None:
    variables = arguments(item={"id": 3}, index=1, error={"status": 503})
    assert evaluate("${ [$item.id, $index, $error.status, $context.user] }", {}, variables) == [
        3,
        1,
        503,
        "ana",
    ]


def test_a_variable_named_by_each_or_as_is_bound_under_that_name() -> None:
    compiled = compile_expression("$image.url", implicit=True, variables=["image", "at"])
    assert compiled.variables == ("image",)  # only what the program uses is bound
    assert evaluate(compiled, None, {"image": {"url": "a.png"}, "at": 0}) == "a.png"


def test_a_variable_not_in_scope_does_not_compile() -> None:
    with pytest.raises(InvalidSpec, match=r"\$item is not defined"):
        compile_expression("${ $item }")
    with pytest.raises(InvalidSpec, match=r"\$item is not defined"):
        evaluate("${ $item }", None, arguments())


def test_a_compiled_variable_missing_at_evaluation_is_an_expression_error() -> None:
    compiled = compile_expression("${ $item + 1 }", variables=["item"])
    with pytest.raises(WorkflowError, match=r"\$item is not available here") as caught:
        evaluate(compiled, None, {}, instance="/do/0/each/for/in")
    assert caught.value.type == wf_errors.EXPRESSION
    assert caught.value.instance == "/do/0/each/for/in"


def test_templates_see_variables() -> None:
    template = {"url": "${ $item.url }", "position": "${ $index }", "kept": "$item"}
    rendered = evaluate_template(template, {}, {"item": {"url": "b.png"}, "index": 4})
    assert rendered == {"url": "b.png", "position": 4, "kept": "$item"}


def test_a_variable_shadowed_inside_the_program_is_the_program_s() -> None:
    assert evaluate("${ 5 as $item | $item }", None, {"item": 1}) == 5


def test_scope_carries_variables_into_the_data_flow() -> None:
    from ember.workflows.dataflow import Scope, should_run, task_input

    scope = Scope(workflow={"id": "x"}).with_variables(item={"keep": True}, index=0)
    scope = scope.with_variables(error={"status": 500})
    task = {"if": "$item.keep and $error.status == 500", "input": {"from": "${ [$index, .] }"}}
    assert should_run(task, "raw", scope)
    assert task_input(task, "raw", scope) == [0, "raw"]
    assert scope.variables == {"item": {"keep": True}, "index": 0, "error": {"status": 500}}
