"""The workflow parser: the DSL subset Ember runs, what it refuses and where, and task paths."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

import pytest
import yaml

from ember.errors import InvalidSpec
from ember.workflows.model import (
    CallFunction,
    CallHttp,
    DoTask,
    Duration,
    EmitTask,
    ForkTask,
    ForTask,
    ListenTask,
    RaiseTask,
    RunWorkflow,
    SetTask,
    SwitchTask,
    TryTask,
    WaitTask,
    Workflow,
    split_path,
    walk,
)
from ember.workflows.parser import load_workflow, parse_workflow

HEAD = "document: {dsl: 1.0.0, namespace: test, name: sample, version: 0.1.0}\n"


def parse(body: str) -> Workflow:
    return parse_workflow(HEAD + textwrap.dedent(body))


def refused(body: str, *, head: str = HEAD) -> dict[str, str]:
    """The problems of a refused document, as ``{field: message}``."""
    with pytest.raises(InvalidSpec) as caught:
        parse_workflow(head + textwrap.dedent(body))
    errors = caught.value.details["errors"]
    for error in errors:
        assert error["field"] in caught.value.message
    return {error["field"]: error["message"] for error in errors}


def only(workflow: Workflow) -> Any:
    assert len(workflow.do) == 1
    return workflow.do[0]


# -- every supported task, modelled on the DSL reference's examples -------------------------


def test_document_and_workflow_level_fields() -> None:
    workflow = parse_workflow(textwrap.dedent("""
        document:
          dsl: '1.0.0'
          namespace: shop
          name: order-pipeline
          version: '1.2.0'
          title: Order pipeline
          summary: Validates, charges and ships an order.
          tags: {team: payments}
        input:
          schema:
            format: json
            document: {type: object, required: [order]}
          from: .order
        output:
          as: '${ {id: .id, status: .status} }'
        timeout:
          after: {hours: 25}
        do:
          - validate:
              call: validate
    """))
    doc = workflow.document
    assert (doc.dsl, doc.namespace, doc.name, doc.version) == (
        "1.0.0", "shop", "order-pipeline", "1.2.0",
    )
    assert doc.title == "Order pipeline" and doc.tags == {"team": "payments"}
    assert doc.summary == "Validates, charges and ships an order."
    assert workflow.input is not None
    assert workflow.input.schema == {"type": "object", "required": ["order"]}
    assert workflow.input.from_ == ".order"
    assert workflow.output is not None and workflow.output.as_.startswith("${")
    assert workflow.timeout is not None
    assert workflow.timeout.after == Duration(25 * 3_600_000)


def test_call_an_ember_function_with_or_without_qualifier_and_payload() -> None:
    workflow = parse("""
        do:
          - resize:
              call: resize
          - live:
              call: resize:live
              with:
                image: ${ .image }
                sizes: [64, 128]
          - pinned:
              call: resize:3
    """)
    plain, live, pinned = workflow.do
    assert isinstance(plain, CallFunction)
    assert (plain.function, plain.qualifier, plain.with_) == ("resize", "latest", None)
    assert isinstance(live, CallFunction)
    assert (live.function, live.qualifier) == ("resize", "live")
    assert live.with_ == {"image": "${ .image }", "sizes": [64, 128]}
    assert isinstance(pinned, CallFunction) and pinned.qualifier == "3"


def test_call_http() -> None:
    workflow = parse("""
        do:
          - getPet:
              call: http
              with:
                method: get
                endpoint: https://petstore.swagger.io/v2/pet/{petId}
                headers: {accept: application/json}
                query: {verbose: "true"}
                output: response
          - addPet:
              call: http
              with:
                method: post
                endpoint:
                  uri: https://petstore.swagger.io/v2/pet
                body: ${ .pet }
    """)
    get, post = workflow.do
    assert isinstance(get, CallHttp)
    assert get.method == "GET"
    assert get.endpoint == "https://petstore.swagger.io/v2/pet/{petId}"
    assert get.headers == {"accept": "application/json"}
    assert get.query == {"verbose": "true"}
    assert get.output_format == "response"
    assert isinstance(post, CallHttp)
    assert (post.method, post.endpoint, post.body) == (
        "POST", "https://petstore.swagger.io/v2/pet", "${ .pet }",
    )
    assert post.output_format == "content"


def test_do_fork_and_compete() -> None:
    workflow = parse("""
        do:
          - steps:
              do:
                - first: {set: {a: 1}}
                - second: {set: {b: 2}}
          - raiseAlarm:
              fork:
                compete: true
                branches:
                  - callNurse:
                      call: http
                      with: {method: put, endpoint: https://hospital.example/nurses}
                  - callDoctor:
                      call: page-doctor
    """)
    steps, race = workflow.do
    assert isinstance(steps, DoTask) and [t.name for t in steps.do] == ["first", "second"]
    assert isinstance(race, ForkTask) and race.compete is True
    assert [t.name for t in race.branches] == ["callNurse", "callDoctor"]
    plain = only(parse("do: [{both: {fork: {branches: [{a: {wait: PT1S}}, {b: {wait: PT2S}}]}}}]"))
    assert isinstance(plain, ForkTask) and plain.compete is False


def test_switch_cases_and_default() -> None:
    workflow = parse("""
        do:
          - processOrder:
              switch:
                - case1:
                    when: .orderType == "electronic"
                    then: processElectronicOrder
                - case2:
                    when: ${ .orderType == "physical" }
                    then: processPhysicalOrder
                - default:
                    then: end
          - processElectronicOrder:
              call: ship-electronic
              then: exit
          - processPhysicalOrder:
              call: ship-physical
    """)
    switch = workflow.do[0]
    assert isinstance(switch, SwitchTask)
    assert [(c.name, c.when, c.then) for c in switch.cases] == [
        ("case1", '.orderType == "electronic"', "processElectronicOrder"),
        ("case2", '${ .orderType == "physical" }', "processPhysicalOrder"),
        ("default", None, "end"),
    ]
    assert workflow.do[1].then == "exit"
    assert workflow.do[2].then == "continue"


def test_for_with_the_concurrency_extension() -> None:
    workflow = parse("""
        do:
          - checkup:
              for:
                each: pet
                in: .pets
                at: i
                concurrency: 32
              while: .vet != null
              do:
                - waitForCheckup:
                    call: checkup
                    with: {pet: "${ $pet }", position: "${ $i }"}
          - defaults:
              for: {in: "${ .items }"}
              do:
                - one: {call: work}
    """)
    loop, defaults = workflow.do
    assert isinstance(loop, ForTask)
    assert (loop.each, loop.in_, loop.at, loop.while_, loop.concurrency) == (
        "pet", ".pets", "i", ".vet != null", 32,
    )
    assert [t.name for t in loop.do] == ["waitForCheckup"]
    assert isinstance(defaults, ForTask)
    assert (defaults.each, defaults.at, defaults.while_, defaults.concurrency) == (
        "item", "index", None, 1,
    )


def test_for_and_catch_variables_are_in_scope_of_their_tasks_only() -> None:
    parse("""
        do:
          - each:
              for: {in: .items}
              while: $index < 10
              do:
                - work:
                    call: work
                    with: {item: "${ $item }", at: "${ $index }"}
                - guarded:
                    try:
                      - again: {call: work}
                    catch:
                      when: $error.status >= 500 and $item != null
                      retry: {when: '$error.status == 503'}
                      do:
                        - report: {call: report, with: {error: "${ $error }"}}
    """)
    errors = refused("""
        do:
          - each:
              for: {in: .items, each: pet}
              do:
                - work: {call: work, with: {pet: "${ $pet }"}}
          - after: {call: work, with: {pet: "${ $pet }", error: "${ $error }"}}
    """)
    assert list(errors) == ["do[1].after.with.pet", "do[1].after.with.error"]
    assert "$pet is not defined" in errors["do[1].after.with.pet"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("do: [{a: {for: {in: .x, each: 'not ok'}, do: [{b: {call: w}}]}}]", "do[0].a.for.each"),
        ("do: [{a: {for: {in: .x, at: input}, do: [{b: {call: w}}]}}]", "do[0].a.for.at"),
        ("do: [{a: {try: [{b: {call: w}}], catch: {as: context}}}]", "do[0].a.catch.as"),
    ],
)
def test_variable_names_are_jq_names_apart_from_the_runtime_arguments(
    body: str, field: str
) -> None:
    assert field in refused(body)


def test_set_and_wait() -> None:
    workflow = parse("""
        do:
          - setShape:
              set:
                shape: circle
                size: ${ .configuration.size }
          - replace:
              set: '${ {total: (.items | length)} }'
          - delay: {wait: PT1M30S}
          - longer: {wait: {days: 1, hours: 2, minutes: 3, seconds: 4, milliseconds: 5}}
          - fraction: {wait: PT0.25S}
          - weeks: {wait: P2W}
    """)
    shape, replace, *waits = workflow.do
    assert isinstance(shape, SetTask) and shape.set == {
        "shape": "circle", "size": "${ .configuration.size }",
    }
    assert isinstance(replace, SetTask) and replace.set == "${ {total: (.items | length)} }"
    assert all(isinstance(w, WaitTask) for w in waits)
    assert [w.wait.milliseconds for w in waits] == [
        90_000, 93_784_005, 250, 14 * 86_400_000,
    ]
    assert waits[0].wait.seconds == 90.0


def test_raise_inline_and_from_use_errors() -> None:
    workflow = parse("""
        use:
          errors:
            notFound:
              type: https://serverlessworkflow.io/spec/1.0.0/errors/not-found
              status: 404
              title: Not found
        do:
          - inline:
              raise:
                error:
                  type: https://serverlessworkflow.io/spec/1.0.0/errors/validation
                  status: 400
                  title: Validation failed
                  detail: ${ "Missing field " + .field }
          - reused:
              raise:
                error: notFound
    """)
    inline, reused = workflow.do
    assert isinstance(inline, RaiseTask)
    assert (inline.error.status, inline.error.title, inline.error_ref) == (
        400, "Validation failed", None,
    )
    assert inline.error.detail == '${ "Missing field " + .field }'
    assert isinstance(reused, RaiseTask)
    assert reused.error_ref == "notFound" and reused.error.status == 404
    assert workflow.use.errors["notFound"] == reused.error


def test_try_catch_with_retry() -> None:
    workflow = parse("""
        do:
          - tryGetPet:
              try:
                - getPet:
                    call: get-pet
              catch:
                errors:
                  with:
                    type: https://serverlessworkflow.io/spec/1.0.0/errors/communication
                    status: 503
                as: failure
                when: ${ $failure.status >= 500 }
                exceptWhen: .skipRetry
                retry:
                  delay: {seconds: 3}
                  backoff: {exponential: {}}
                  jitter: {from: {seconds: 0}, to: {seconds: 1}}
                  limit:
                    attempt: {count: 5, duration: PT1M}
                    duration: PT10M
                do:
                  - fallback: {set: {pet: null}}
    """)
    task = only(workflow)
    assert isinstance(task, TryTask)
    assert [t.name for t in task.try_] == ["getPet"]
    catch = task.catch
    assert catch.errors_with == {
        "type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503,
    }
    assert (catch.as_, catch.when, catch.except_when) == (
        "failure", "${ $failure.status >= 500 }", ".skipRetry",
    )
    retry = catch.retry
    assert retry is not None
    assert retry.delay == Duration(3000) and retry.backoff.kind == "exponential"
    assert (retry.jitter_from, retry.jitter_to) == (Duration(0), Duration(1000))
    assert retry.limit_attempt_count == 5
    assert retry.limit_attempt_duration == Duration(60_000)
    assert retry.limit_duration == Duration(600_000)
    assert [t.name for t in catch.do] == ["fallback"]


def test_retry_and_timeout_from_use() -> None:
    workflow = parse("""
        use:
          retries:
            patient:
              delay: PT2S
              when: $error.status >= 500
              backoff: {linear: {}}
              limit: {attempt: {count: 3}}
          timeouts:
            short: {after: PT5S}
        do:
          - attempt:
              timeout: short
              try:
                - work: {call: work, timeout: {after: PT1S}}
              catch:
                retry: patient
    """)
    task = only(workflow)
    assert isinstance(task, TryTask)
    assert task.timeout is not None
    assert (task.timeout.after, task.timeout.ref) == (Duration(5000), "short")
    assert task.try_[0].timeout is not None and task.try_[0].timeout.after == Duration(1000)
    retry = task.catch.retry
    assert retry is not None
    assert (retry.ref, retry.backoff.kind, retry.limit_attempt_count) == ("patient", "linear", 3)
    assert task.catch.as_ == "error" and task.catch.errors_with == {}


def test_emit() -> None:
    task = only(parse("""
        do:
          - emitEvent:
              emit:
                event:
                  with:
                    source: https://petstore.com
                    type: com.petstore.order.placed.v1
                    subject: ${ .order.id }
                    tenant: acme
                    data:
                      client: ${ .client }
    """))
    assert isinstance(task, EmitTask)
    assert task.event["type"] == "com.petstore.order.placed.v1"
    assert task.event["tenant"] == "acme"  # a CloudEvents extension attribute
    assert task.event["data"] == {"client": "${ .client }"}


def test_listen_one_all_any_until_and_correlation() -> None:
    workflow = parse("""
        do:
          - shipped:
              listen:
                to:
                  one:
                    with: {type: com.shop.shipped}
          - both:
              listen:
                to:
                  all:
                    - with:
                        type: com.shop.paid
                        data: ${ .amount > 10 }
                      correlate:
                        orderId:
                          from: .data.orderId
                          expect: ${ $context.orderId }
                    - with: {type: com.shop.packed, source: https://warehouse}
                read: envelope
          - either:
              listen:
                to:
                  any:
                    - with: {type: com.shop.cancelled}
                    - with: {type: com.shop.refunded}
                  until: ${ .count > 2 }
          - stopOnEvent:
              listen:
                to:
                  any:
                    - with: {type: com.shop.tick}
                  until:
                    one:
                      with: {type: com.shop.closed}
    """)
    one, both, either, stop = workflow.do
    assert isinstance(one, ListenTask) and one.to.kind == "one" and one.read == "data"
    assert one.to.filters[0].with_ == {"type": "com.shop.shipped"}
    assert isinstance(both, ListenTask) and both.to.kind == "all" and both.read == "envelope"
    paid = both.to.filters[0]
    assert paid.with_["data"] == "${ .amount > 10 }"
    assert paid.correlate == {"orderId": (".data.orderId", "${ $context.orderId }")}
    assert isinstance(either, ListenTask)
    assert (either.to.kind, either.to.until, len(either.to.filters)) == (
        "any", "${ .count > 2 }", 2,
    )
    assert isinstance(stop, ListenTask) and not isinstance(stop.to.until, str)
    assert stop.to.until is not None and stop.to.until.kind == "one"


def test_run_a_sub_workflow() -> None:
    workflow = parse("""
        do:
          - startChild:
              run:
                workflow:
                  namespace: shop
                  name: ship-order
                  version: 1.0.0
                  input: {order: "${ .order }"}
          - fireAndForget:
              run:
                await: false
                workflow: {namespace: shop, name: notify}
    """)
    child, detached = workflow.do
    assert isinstance(child, RunWorkflow)
    assert (child.namespace, child.workflow, child.version, child.await_) == (
        "shop", "ship-order", "1.0.0", True,
    )
    assert child.workflow_input == {"order": "${ .order }"}
    assert isinstance(detached, RunWorkflow)
    assert (detached.version, detached.await_) == ("latest", False)


def test_common_task_fields() -> None:
    task = only(parse("""
        do:
          - charge:
              if: .total > 0
              input:
                from: ${ .order }
              output:
                as: .receipt
              export:
                as: '$context + {receipt: .}'
              timeout:
                after: PT30S
              metadata: {owner: payments}
              then: end
              call: charge
    """))
    assert isinstance(task, CallFunction)
    assert task.if_ == ".total > 0"
    assert task.input is not None and task.input.from_ == "${ .order }"
    assert task.output is not None and task.output.as_ == ".receipt"
    assert task.export is not None and task.export.as_ == "$context + {receipt: .}"
    assert task.timeout is not None and task.timeout.after == Duration(30_000)
    assert (task.then, task.metadata) == ("end", {"owner": "payments"})


def test_input_from_and_output_as_may_be_templates() -> None:
    task = only(parse("""
        do:
          - shape:
              input:
                from: {id: "${ .order.id }", fixed: 1}
              output:
                as: {status: done}
              call: work
    """))
    assert task.input.from_ == {"id": "${ .order.id }", "fixed": 1}
    assert task.output.as_ == {"status": "done"}


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("every: PT15M", {"every": Duration(900_000)}),
        ("cron: '0 0 * * *'", {"cron": "0 0 * * *"}),
        ("after: {minutes: 5}", {"after": Duration(300_000)}),
    ],
)
def test_schedule_by_time(schedule: str, expected: dict[str, Any]) -> None:
    workflow = parse(f"schedule: {{{schedule}}}\ndo: [{{a: {{call: work}}}}]\n")
    assert workflow.schedule is not None
    for key, value in expected.items():
        assert getattr(workflow.schedule, key) == value


def test_schedule_on_all_events_reads_on_as_a_key() -> None:
    # YAML 1.1 would read the key `on` as the boolean true.
    workflow = parse("""
        schedule:
          on:
            all:
              - with: {type: com.shop.paid}
              - with: {type: com.shop.packed}
        do:
          - ship: {call: ship}
    """)
    assert workflow.schedule is not None and workflow.schedule.on is not None
    assert workflow.schedule.on.kind == "all"
    assert [f.with_["type"] for f in workflow.schedule.on.filters] == [
        "com.shop.paid", "com.shop.packed",
    ]


def test_yaml_scalars_stay_as_json_has_them() -> None:
    task = only(parse("do: [{s: {set: {day: 2024-01-01, answer: no, flag: true}}}]"))
    assert task.set == {"day": "2024-01-01", "answer": "no", "flag": True}


# -- refusals: each names the path of the offending node ------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("do: [{a: {frobnicate: 1}}]", "do[0].a", "unknown task kind"),
        ("do: [{a: {call: work, colour: red}}]", "do[0].a.colour", "unknown field"),
        ("do: [{a: {call: work, then: nowhere}}]", "do[0].a.then", "'nowhere' is neither"),
        ("do: [{a: {call: work}}, {a: {call: other}}]", "do[1].a", "duplicate task name 'a'"),
        ("do: [{end: {call: work}}]", "do[0].end", "is a flow directive"),
        ("do: [{a: {call: work, do: [{b: {wait: PT1S}}]}}]", "do[0].a", "one kind"),
        ("do: [{a: {call: grpc}}]", "do[0].a.call", "not supported by Ember: call: grpc"),
        ("do: [{a: {call: openapi}}]", "do[0].a.call", "not supported by Ember: call: openapi"),
        ("do: [{a: {call: asyncapi}}]", "do[0].a.call",
         "not supported by Ember: call: asyncapi"),
        ("do: [{a: {run: {container: {image: alpine}}}}]", "do[0].a.run.container",
         "not supported by Ember: run: container"),
        ("do: [{a: {run: {script: {language: js, code: x}}}}]", "do[0].a.run.script",
         "not supported by Ember: run: script"),
        ("do: [{a: {run: {shell: {command: ls}}}}]", "do[0].a.run.shell",
         "not supported by Ember: run: shell"),
        ("do: [{a: {call: 'bad name!'}}]", "do[0].a.call", "neither http nor an Ember function"),
        ("do: [{a: {call: 'resize:0'}}]", "do[0].a.call", "neither http nor an Ember function"),
        ("do: [{a: {call: 'resize@shop'}}]", "do[0].a.call",
         "not supported by Ember: functions from a catalog"),
        ("do: [{a: {wait: P1M}}]", "do[0].a.wait", "not an ISO 8601 duration"),
        ("do: [{a: {wait: PT}}]", "do[0].a.wait", "not an ISO 8601 duration"),
        ("do: [{a: {wait: soon}}]", "do[0].a.wait", "not an ISO 8601 duration"),
        ("do: [{a: {wait: {minutes: -1}}}]", "do[0].a.wait.minutes", "at least 0"),
        ("do: [{a: {wait: {fortnights: 1}}}]", "do[0].a.wait.fortnights", "unknown field"),
        ("do: [{a: {wait: {}}}]", "do[0].a.wait", "at least one of"),
        ("do: [{a: {wait: '${ .delay }'}}]", "do[0].a.wait",
         "not supported by Ember: a runtime expression as a duration"),
        ("do: [{a: {for: {in: .x, concurrency: 0}, do: [{b: {call: w}}]}}]",
         "do[0].a.for.concurrency", "at least 1"),
        ("do: [{a: {for: {in: .x, concurrency: -3}, do: [{b: {call: w}}]}}]",
         "do[0].a.for.concurrency", "at least 1"),
        ("do: [{a: {for: {in: .x, concurrency: '4'}, do: [{b: {call: w}}]}}]",
         "do[0].a.for.concurrency", "must be an integer"),
        ("do: [{a: {for: {in: .x, concurrency: true}, do: [{b: {call: w}}]}}]",
         "do[0].a.for.concurrency", "must be an integer"),
        ("do: [{a: {for: {in: .x}}}]", "do[0].a.do", "field required"),
        ("do: [{a: {call: w, if: '.x |'}}]", "do[0].a.if", "does not compile"),
        ("do: [{a: {set: {x: '${ .x | }'}}}]", "do[0].a.set.x", "does not compile"),
        ("do: [{a: {set: {x: ['${ ok }', '${ (( }']}}}]", "do[0].a.set.x[1]",
         "does not compile"),
        ("do: [{a: {for: {in: '${ [ }'}, do: [{b: {call: w}}]}}]", "do[0].a.for.in",
         "does not compile"),
        ("do: [{a: {switch: [{c: {when: '.x ==', then: end}}]}}]",
         "do[0].a.switch[0].c.when", "does not compile"),
        ("do: [{a: {switch: [{c: {when: .x, then: elsewhere}}]}}]",
         "do[0].a.switch[0].c.then", "'elsewhere' is neither"),
        ("do: [{a: {listen: {to: {any: [{with: {type: t}}], until: '.x |'}}}}]",
         "do[0].a.listen.to.until", "does not compile"),
        ("do: [{a: {listen: {to: {one: {with: {type: t}, correlate: {k: {from: '[['}}}}}}}]",
         "do[0].a.listen.to.one.correlate.k.from", "does not compile"),
        ("do: [{a: {listen: {to: {all: [{with: {type: t}}], until: .x}}}}]",
         "do[0].a.listen.to.until", "only listening to any"),
        ("do: [{a: {listen: {to: {one: {with: {type: t}}, all: []}}}}]",
         "do[0].a.listen.to", "exactly one of one, all, any"),
        ("do: [{a: {listen: {to: {any: []}}}}]", "do[0].a.listen.to.any",
         "not supported by Ember: listening to every event"),
        ("do: [{a: {listen: {to: {all: []}}}}]", "do[0].a.listen.to.all",
         "must be a non-empty list of event filters"),
        ("do: [{a: {listen: {to: {one: {with: {type: t}}}}, foreach: {item: x}}}]",
         "do[0].a.foreach", "not supported by Ember: listen.foreach"),
        ("do: [{a: {raise: {error: missing}}}]", "do[0].a.raise.error",
         "no error named 'missing'"),
        ("do: [{a: {raise: {error: {type: x, status: 42}}}}]", "do[0].a.raise.error.status",
         "at least 100"),
        ("do: [{a: {call: w, timeout: missing}}]", "do[0].a.timeout",
         "no timeout named 'missing'"),
        ("do: [{a: {try: [{b: {call: w}}], catch: {retry: missing}}}]",
         "do[0].a.catch.retry", "no retry policy named 'missing'"),
        ("do: [{a: {try: [{b: {call: w}}]}}]", "do[0].a.catch", "field required"),
        ("do: [{a: {try: [{b: {call: w}}], catch: {retry: {backoff: {}}}}}]",
         "do[0].a.catch.retry.backoff", "exactly one of constant"),
        ("do: [{a: {try: [{b: {call: w}}], catch: {retry: {limit: {attempt: {count: 0}}}}}}]",
         "do[0].a.catch.retry.limit.attempt.count", "at least 1"),
        ("do: [{a: {call: http, with: {method: get, endpoint: {uri: x, authentication: y}}}}]",
         "do[0].a.with.endpoint.authentication",
         "not supported by Ember: endpoint authentication"),
        ("do: [{a: {call: http, with: {method: fetch, endpoint: x}}}]",
         "do[0].a.with.method", "not an HTTP method"),
        ("do: [{a: {call: http, with: {endpoint: x}}}]", "do[0].a.with.method", "field required"),
        ("do: [{a: {call: http, with: {method: get, endpoint: x, headers: [a]}}}]",
         "do[0].a.with.headers", "a mapping or a runtime expression, not a list"),
        ("do: [{a: {call: http, with: {method: get, endpoint: x, query: '${ [ }'}}}]",
         "do[0].a.with.query", "does not compile"),
        ("do: [{a: {emit: {event: {with: {type: t}}}}}]", "do[0].a.emit.event.with.source",
         "field required"),
        ("do: [{a: {set: plain}}]", "do[0].a.set", "a mapping or a runtime expression"),
        ("do: []", "do", "non-empty list of tasks"),
        ("do: [{a: {call: w}, b: {call: w}}]", "do[0]", "one task name"),
        ("use: {functions: {f: {call: w}}}\ndo: [{a: {call: w}}]", "use.functions",
         "not supported by Ember: use.functions"),
        ("use: {authentications: {}}\ndo: [{a: {call: w}}]", "use.authentications",
         "not supported by Ember: use.authentications"),
        ("evaluate: {language: js}\ndo: [{a: {call: w}}]", "evaluate.language",
         "not supported by Ember: expression language 'js'"),
        ("evaluate: {mode: loose}\ndo: [{a: {call: w}}]", "evaluate.mode",
         "not supported by Ember: evaluation mode 'loose'"),
        ("schedule: {cron: 'every day'}\ndo: [{a: {call: w}}]", "schedule.cron",
         "not a cron expression"),
        ("schedule: {cron: '*/5 * * * * *'}\ndo: [{a: {call: w}}]", "schedule.cron",
         "five fields"),
        ("schedule: {every: PT1M, cron: '* * * * *'}\ndo: [{a: {call: w}}]", "schedule",
         "exactly one of"),
        ("colour: red\ndo: [{a: {call: w}}]", "colour", "unknown field"),
        ("input: {schema: {format: avro, document: {}}}\ndo: [{a: {call: w}}]",
         "input.schema.format", "not supported by Ember: schema format 'avro'"),
    ],
)
def test_refusals_name_the_path(body: str, field: str, message: str) -> None:
    errors = refused(body + "\n")
    assert field in errors, errors
    assert message in errors[field]


@pytest.mark.parametrize(
    ("dsl", "accepted"),
    [("1.0.0", True), ("1.0.3", True), ("1.1.0", False), ("0.8", False), ("1.0.0-alpha1", False)],
)
def test_dsl_version_must_be_1_0_x(dsl: str, accepted: bool) -> None:
    head = f"document: {{dsl: '{dsl}', namespace: test, name: sample, version: 0.1.0}}\n"
    body = "do: [{a: {call: w}}]\n"
    if accepted:
        assert parse_workflow(head + body).document.dsl == dsl
    else:
        assert "reads DSL version 1.0.x" in refused(body, head=head)["document.dsl"]


def test_document_names_and_required_fields() -> None:
    errors = refused(
        "do: [{a: {call: w}}]\n",
        head="document: {dsl: 1.0.0, namespace: Bad_NS, name: ok, version: one}\n",
    )
    assert "lowercase letters" in errors["document.namespace"]
    assert "semantic version" in errors["document.version"]
    assert refused("do: [{a: {call: w}}]\n", head="document: {dsl: 1.0.0}\n")[
        "document.namespace"
    ] == "field required"
    assert refused("", head=HEAD) == {"do": "field required"}


def test_a_nested_refusal_names_the_whole_path() -> None:
    errors = refused("""
        do:
          - validate:
              call: validate
          - pay:
              fork:
                branches:
                  - charge:
                      call: grpc
                  - reserve:
                      try:
                        - hold:
                            for: {in: .items}
                            do:
                              - one: {run: {container: {image: x}}}
                      catch:
                        do:
                          - undo: {call: work, then: validate}
    """)
    assert errors == {
        "do[1].pay.fork.branches[0].charge.call": "not supported by Ember: call: grpc",
        "do[1].pay.fork.branches[1].reserve.try[0].hold.do[0].one.run.container":
            "not supported by Ember: run: container",
        # `then` only reaches tasks of the same list.
        "do[1].pay.fork.branches[1].reserve.catch.do[0].undo.then":
            "'validate' is neither continue, exit, end nor a task in the same list",
    }


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse("do: [{a: {call: grpc}}, {b: {wait: P1Y}}, {c: {raise: {error: x}}}]\n")
    fields = [e["field"] for e in caught.value.details["errors"]]
    assert fields == ["do[0].a.call", "do[1].b.wait", "do[2].c.raise.error"]
    assert caught.value.message.startswith("invalid spec: do[0].a.call: not supported by Ember")


# -- YAML and JSON ---------------------------------------------------------------------------

NESTED = """
document: {dsl: 1.0.0, namespace: shop, name: nested, version: 1.0.0}
do:
  - validate:
      call: validate
  - pay:
      fork:
        branches:
          - charge: {call: charge}
          - reserve:
              do:
                - hold: {call: hold}
  - items:
      for: {in: .items, concurrency: 4}
      do:
        - guarded:
            try:
              - resize: {call: resize}
            catch:
              do:
                - log: {call: log}
  - a/b~c:
      set: {done: true}
"""

NESTED_PATHS = [
    ("/do/0/validate", "validate"),
    ("/do/1/pay", "pay"),
    ("/do/1/pay/fork/branches/0/charge", "charge"),
    ("/do/1/pay/fork/branches/1/reserve", "reserve"),
    ("/do/1/pay/fork/branches/1/reserve/do/0/hold", "hold"),
    ("/do/2/items", "items"),
    ("/do/2/items/do/0/guarded", "guarded"),
    ("/do/2/items/do/0/guarded/try/0/resize", "resize"),
    ("/do/2/items/do/0/guarded/catch/do/0/log", "log"),
    ("/do/3/a~1b~0c", "a/b~c"),
]


def test_yaml_and_json_give_the_same_workflow() -> None:
    data = yaml.safe_load(NESTED)
    from_yaml = parse_workflow(NESTED)
    from_json = parse_workflow(json.dumps(data), "application/json")
    from_bytes = parse_workflow(json.dumps(data).encode(), "application/json; charset=utf-8")
    from_json_as_yaml = parse_workflow(json.dumps(data).encode())
    assert from_yaml == from_json == from_bytes == from_json_as_yaml == load_workflow(data)


@pytest.mark.parametrize(
    ("text", "content_type", "message"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ("a: [unclosed", None, "not valid YAML"),
        ("a: [unclosed", "application/yaml", "not valid YAML"),
    ],
)
def test_unreadable_text_is_refused(text: str, content_type: str | None, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_workflow(text, content_type)


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = HEAD + "use:\n  errors: {}\n" + "\n".join(lines) + "\ndo: [{a: {call: w}}]\n"
    with pytest.raises(InvalidSpec) as caught:
        parse_workflow(text)
    assert caught.value.details["errors"] == [
        {"field": "body", "message": "the document has over 100000 values"}
    ]


def test_yaml_aliases_within_bounds_are_read() -> None:
    task = only(parse("""
        do:
          - a:
              set:
                first: &shared {x: 1}
                second: *shared
    """))
    assert task.set == {"first": {"x": 1}, "second": {"x": 1}}


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_a_document_nested_too_deeply_is_refused(content_type: str | None) -> None:
    text = '{"do": ' + "[" * 2_000 + "]" * 2_000 + "}"
    with pytest.raises(InvalidSpec) as caught:
        parse_workflow(text, content_type)
    assert caught.value.details["errors"] == [
        {"field": "body", "message": "the document is nested too deeply"}
    ]


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        (HEAD + "do:\n  - a:\n      call: w\n      call: v\n", None),
        ('{"document": {}, "do": [{"a": {"call": "w", "call": "v"}}]}', "application/json"),
    ],
)
def test_a_key_written_twice_is_refused(text: str, content_type: str | None) -> None:
    with pytest.raises(InvalidSpec, match="duplicate key 'call'"):
        parse_workflow(text, content_type)


def test_yaml_merge_keys_may_be_overridden() -> None:
    task = only(parse("""
        do:
          - a:
              set:
                base: &base {x: 1, y: 2}
                merged:
                  <<: *base
                  y: 3
    """))
    assert task.set["merged"] == {"x": 1, "y": 3}


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_workflow("- just\n- a list\n")
    assert caught.value.details["errors"] == [
        {"field": "body", "message": "must be a mapping, not a list"}
    ]


# -- task paths ------------------------------------------------------------------------------


def test_walk_names_every_task_by_its_json_pointer_in_document_order() -> None:
    workflow = parse_workflow(NESTED)
    walked = [(path, task.name) for path, task in walk(workflow)]
    assert walked == NESTED_PATHS
    assert all(task.path == path for path, task in walk(workflow))
    assert list(workflow.tasks) == [path for path, _ in NESTED_PATHS]
    assert workflow.tasks["/do/2/items/do/0/guarded/try/0/resize"].name == "resize"


def test_task_paths_are_the_spec_task_reference_into_the_document() -> None:
    data = yaml.safe_load(NESTED)
    for path, task in walk(parse_workflow(NESTED)):
        node: Any = data
        for part in path.split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        assert node is not None
        assert task.name == path.rsplit("/", 1)[1].replace("~1", "/").replace("~0", "~")


def test_task_paths_are_stable_across_parses() -> None:
    first = [path for path, _ in walk(parse_workflow(NESTED))]
    second = [path for path, _ in walk(parse_workflow(json.dumps(yaml.safe_load(NESTED))))]
    assert first == second


def test_walk_from_a_task_yields_its_subtree() -> None:
    workflow = parse_workflow(NESTED)
    fork = workflow.tasks["/do/1/pay"]
    assert [path for path, _ in walk(fork)] == [path for path, _ in NESTED_PATHS[1:5]]


def test_task_lists_by_path_lead_from_a_task_to_its_siblings() -> None:
    workflow = parse_workflow(NESTED)
    assert list(workflow.lists) == [
        "/do",
        "/do/1/pay/fork/branches",
        "/do/1/pay/fork/branches/1/reserve/do",
        "/do/2/items/do",
        "/do/2/items/do/0/guarded/try",
        "/do/2/items/do/0/guarded/catch/do",
    ]
    for path, task in walk(workflow):
        tasks, index = workflow.siblings(path)
        assert tasks[index] is task
    assert split_path("/do/3/a~1b~0c") == ("/do", 3, "a/b~c")
    assert split_path("/do/1/pay/fork/branches/0/charge") == (
        "/do/1/pay/fork/branches", 0, "charge",
    )


def test_the_document_and_each_task_keep_their_definition_as_written() -> None:
    data = yaml.safe_load(NESTED)
    workflow = load_workflow(data)
    assert workflow.definition == data
    assert workflow.tasks["/do/1/pay/fork/branches/0/charge"].definition == {"call": "charge"}
    assert workflow.tasks["/do/2/items"].definition == data["do"][2]["items"]


def test_parsed_workflows_are_immutable() -> None:
    workflow = parse_workflow(NESTED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.do[0].name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.document = workflow.document  # type: ignore[misc]
