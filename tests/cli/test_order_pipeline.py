"""``examples/order-pipeline`` as its README runs it, against the real server: the functions
and the workflow deployed with the CLI, an order run, its "shipped" event sent with
``ember event send``; a declined card failing at the charge task; two orders kept apart by
their order ids; the 24-hour timeout path, through a copy of the document with a short
timeout deployed through the API; and the README's example document parses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ember.client import Client
from ember.workflows.model import walk
from ember.workflows.parser import parse_workflow
from tests.cli.conftest import Cli
from tests.waiting import wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "order-pipeline"
FUNCTIONS = ("validate-order", "charge-payment", "reserve-stock", "notify")
TIMEOUT_ERROR = "https://serverlessworkflow.io/spec/1.0.0/errors/timeout"


@pytest.fixture
def shop(cli: Cli) -> Iterator[Cli]:
    """The example deployed as its README says (for each test: on PostgreSQL the tests'
    database is emptied before each one)."""
    for name in FUNCTIONS:
        cli.ok("deploy", EXAMPLE / "functions" / name)
    deployed = cli.ok("workflow", "deploy", EXAMPLE / "workflow.yaml")
    assert "shop/order-pipeline 1.0.0" in deployed.stdout
    yield cli
    cli.ok("workflow", "delete", "order-pipeline", "--force")
    for name in FUNCTIONS:
        cli.ok("fn", "delete", name, "--yes")


def order(order_id: str, **changes: Any) -> str:
    placed: dict[str, Any] = json.loads((EXAMPLE / "order.json").read_text())
    return json.dumps(placed | {"orderId": order_id} | changes)


def execution(cli: Cli, execution_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(cli.ok("execution", "get", execution_id,
                                              "--json").stdout)
    return shown


def listening(cli: Cli, execution_id: str) -> dict[str, Any]:
    """The execution once it waits on its listen for the shipped event."""
    def waits() -> dict[str, Any]:
        found = execution(cli, execution_id)
        assert found["status"] in ("running", "waiting"), found["error"]
        return found if found["status"] == "waiting" else {}

    return wait_until(waits, message=f"execution {execution_id} waiting for its shipment")


def taken(sent: str) -> bool:
    """Whether ``ember event send`` reached the listen: at once, or kept for it. An execution
    reads ``waiting`` a moment before its listen is registered (the state is shown while it
    is being recorded), and an event sent in that moment is retained and taken right after."""
    return "matched 1 execution(s)" in sent or "kept for listens" in sent


def test_an_order_ships_and_the_customer_is_told(shop: Cli) -> None:
    started = shop.ok("workflow", "run", "order-pipeline", "--data", order("T-100"))
    execution_id = started.stdout.strip()
    waiting = listening(shop, execution_id)
    statuses = {step["path"]: step["status"] for step in waiting["history"]}
    assert statuses["/do/1/prepare/fork/branches/0/charge"] == "succeeded"
    assert statuses["/do/1/prepare/fork/branches/1/reserve"] == "succeeded"
    assert statuses["/do/2/awaitShipment/try/0/shipped"] == "running"

    sent = shop.ok("event", "send", "--type", "com.shop.shipped", "--data",
                   '{"orderId": "T-100", "carrier": "DHL", "tracking": "JD014600"}')
    assert taken(sent.stdout)
    done = json.loads(shop.ok("execution", "watch", execution_id, "--json").stdout)
    assert done["status"] == "succeeded", done["error"]
    output = done["output"]
    assert output["orderId"] == "T-100" and output["shipped"] is True
    assert output["paymentId"].startswith("pay_")
    assert output["reservationId"].startswith("res_")
    assert output["notification"] == {
        "to": "ada@example.com", "subject": "Order T-100 is on its way",
        "body": "Your order shipped with DHL, tracking number JD014600.",
    }
    ran = [step["path"] for step in done["history"]]
    assert "/do/4/confirm" in ran and "/do/5/apologize" not in ran

    shown = shop.ok("execution", "get", execution_id).stdout
    assert "succeeded" in shown and "/do/4/confirm" in shown and "notify:latest" in shown


def test_two_orders_wait_for_their_own_shipment(shop: Cli) -> None:
    first = shop.ok("workflow", "run", "order-pipeline", "--data", order("T-201")).stdout.strip()
    second = shop.ok("workflow", "run", "order-pipeline", "--data",
                     order("T-202")).stdout.strip()
    listening(shop, first)
    listening(shop, second)
    sent = shop.ok("event", "send", "--type", "com.shop.shipped", "--data",
                   '{"orderId": "T-202"}')
    assert taken(sent.stdout)
    done = json.loads(shop.ok("execution", "watch", second, "--json").stdout)
    assert done["output"]["orderId"] == "T-202"
    # No carrier in the event: the message says so rather than failing.
    assert "our carrier" in done["output"]["notification"]["body"]
    assert execution(shop, first)["status"] == "waiting"
    shop.ok("event", "send", "--type", "com.shop.shipped", "--data", '{"orderId": "T-201"}')
    assert json.loads(shop.ok("execution", "watch", first, "--json").stdout)["output"][
        "orderId"] == "T-201"


def test_a_declined_card_fails_at_the_charge(shop: Cli) -> None:
    failed = shop.fails("workflow", "run", "order-pipeline", "--wait", "--data",
                        order("T-300", card="declined"))
    assert "card declined for order T-300" in failed.stderr
    assert "/do/1/prepare/fork/branches/0/charge" in failed.stderr
    [row] = json.loads(shop.ok("execution", "list", "-w", "order-pipeline", "-s", "failed",
                               "--json").stdout)["executions"][:1]
    error = execution(shop, row["id"])["error"]
    assert error["instance"] == "/do/1/prepare/fork/branches/0/charge"
    assert error["title"] == "FunctionError"

    bad = shop.fails("workflow", "run", "order-pipeline", "--wait", "--data",
                     order("T-301", total=1))
    assert "/do/0/validate" in bad.stderr and "is not the items'" in bad.stderr


def test_no_shipment_in_time_tells_the_customer_it_is_late(shop: Cli) -> None:
    # The same document with a short timeout, deployed under its own name through the API.
    document = (EXAMPLE / "workflow.yaml").read_text()
    assert document.count("after: PT24H") == 1
    short = document.replace("after: PT24H", "after: PT0.2S").replace(
        "name: order-pipeline\n", "name: order-pipeline-late\n")
    with Client(shop.url) as ember:
        ember.deploy_workflow("order-pipeline-late", short)
        try:
            done = ember.run_workflow("order-pipeline-late", json.loads(order("T-400")),
                                      wait_s=60)
            assert done.status == "succeeded", done.error
            assert done.output["shipped"] is False
            assert done.output["notification"]["subject"] == "Order T-400 is delayed"
            assert done.history is not None
            steps = {step.path: step for step in done.history}
            listen = steps["/do/2/awaitShipment/try/0/shipped"]
            assert listen.status == "failed" and listen.error is not None
            assert listen.error["type"] == TIMEOUT_ERROR
            assert steps["/do/2/awaitShipment/catch/do/0/giveUp"].status == "succeeded"
            assert "/do/4/confirm" not in steps
        finally:
            ember.delete_workflow("order-pipeline-late", force=True)


def test_the_readme_example_document_is_valid() -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    section = readme.split("\n## Workflows\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "no YAML document under ## Workflows"
    workflow = parse_workflow(block.group(1), "application/yaml")
    assert [path for path, _ in walk(workflow)][-1] == "/do/2/shipped"
