"""The order demo: register definitions, run workers, start workflows and show their progress."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .access import Access

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_DIR = os.path.join(ROOT, "deploy", "local", "demo")


def build_worker(client: Any, rng: random.Random) -> Any:
    from orchestrator_client import Worker

    worker = Worker(client, worker_id="demo-worker", concurrency=8, poll_timeout_ms=2000)

    @worker.task("reserve_stock")
    def reserve_stock(task: Any) -> dict[str, Any]:
        items = task.input.get("items") or []
        time.sleep(rng.uniform(0.05, 0.3))
        return {"reservationId": f"res-{task.input['orderId']}", "total": 19.5 * max(len(items), 1)}

    @worker.task("charge_payment")
    def charge_payment(task: Any) -> dict[str, Any]:
        time.sleep(rng.uniform(0.05, 0.3))
        if rng.random() < 0.25 and task.retry_count == 0:
            # Show a retry: the first attempt of some payments fails, the next one succeeds.
            raise RuntimeError("payment gateway timeout (the demo fails some first attempts)")
        return {"paymentId": f"pay-{task.input['orderId']}", "charged": task.input.get("amount")}

    @worker.task("ship_order")
    def ship_order(task: Any) -> dict[str, Any]:
        time.sleep(rng.uniform(0.05, 0.3))
        return {"trackingNumber": f"TRK{rng.randrange(10**6):06d}"}

    return worker


def register(client: Any) -> None:
    with open(os.path.join(DEMO_DIR, "taskdefs.json")) as f:
        client.register_task_defs(json.load(f))
    for workflow in ("order_workflow.json", "order_saga.json"):
        with open(os.path.join(DEMO_DIR, workflow)) as f:
            client.register_workflow_def(json.load(f), overwrite=True)


def run_demo(access: Access, workflows: int = 5, keep_workers: bool = False) -> None:
    """Registers, works and starts the demo through `access` (its token needs the admin role:
    the demo registers definitions, starts workflows, polls tasks and consumes events): first
    the orchestrated order workflow, then the choreographed order saga."""
    rng = random.Random()
    client = access.client(retry_budget_s=30.0)
    register(client)
    print("registered task definitions and workflows 'order_fulfillment' and 'order_saga'")
    print("(deploy/local/demo/)")
    worker = build_worker(client, rng)
    worker.start()
    inventory = None
    try:
        print("\n== orchestration: the workflow calls each service's worker in turn ==")
        ids = [client.start_workflow("order_fulfillment", order) for order in _orders(workflows)]
        watch(client, ids)
        print("\n== choreography: the workflow publishes order.created, an inventory service")
        print("   reacts with inventory.reserved, the workflow waits for that answer ==")
        inventory = start_inventory(client)
        run_saga(client, max(workflows, 2))
        if keep_workers:
            print("demo workers keep running; Ctrl-C to stop", file=sys.stderr)
            while True:
                time.sleep(1)
    finally:
        if inventory is not None:
            inventory.stop()
        worker.stop()
        client.close()


def _orders(n: int, tag: str = "") -> list[dict[str, Any]]:
    stamp = int(time.time()) % 100000
    return [
        {
            "orderId": f"o-{tag}{stamp}-{i}",
            "items": ["book", "pen"][: 1 + i % 2],
            "customer": f"customer-{i}",
            "address": f"{i} Main Street",
        }
        for i in range(n)
    ]


def watch(client: Any, ids: list[str], timeout_s: float = 120.0) -> list[Any]:
    """Prints each workflow's tasks every second until all have ended (or the timeout); returns
    the workflows as last seen."""
    deadline = time.monotonic() + timeout_s
    print(f"started {len(ids)} workflows; progress (task reference:status):")
    while True:
        wfs = [client.get_workflow(wid) for wid in ids]
        for wf in wfs:
            steps = " ".join(
                f"{t.reference_task_name}:{t.status}"
                + (f"(retry {t.retry_count})" if t.retry_count else "")
                for t in wf.tasks
            )
            # Ids are time-ordered (their first characters match): the order id tells them apart.
            print(f"  {wf.input.get('orderId', wf.workflow_id):18} {wf.status:10} {steps}")
        if all(wf.is_terminal for wf in wfs) or time.monotonic() >= deadline:
            break
        print("", flush=True)
        time.sleep(1.0)
    for wf in wfs:
        print(f"{wf.workflow_id} {wf.status} output={json.dumps(wf.output)}", flush=True)
    return wfs


# The choreography: the inventory service is not a worker of the workflow, it only reacts to
# the events the workflow publishes, and the workflow waits for its answer (docs/events.md).
INVENTORY_GROUP = "demo-inventory"
OUT_OF_STOCK = frozenset({"unicorn"})


def inventory_answer(event: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The inventory service's answer to an `order.created` event: the payload of its
    `inventory.reserved` event, its correlation key (the order id) and the request id of its
    publish, derived from the event's offset: a redelivered event (at least once) publishes
    nothing twice."""
    payload = event["payload"]
    order, items = payload["orderId"], list(payload.get("items") or [])
    missing = sorted(set(items) & OUT_OF_STOCK)
    if missing:
        answer = {"orderId": order, "status": "out_of_stock", "missing": missing}
    else:
        total = 19.5 * max(len(items), 1)
        answer = {"orderId": order, "status": "reserved", "reservationId": f"res-{order}"}
        answer["total"] = total
    return answer, order, f"inventory-{event['offset']}"


def start_inventory(client: Any) -> Any:
    """The inventory service: a durable consumer group on `order.created` events that answers
    each with `inventory.reserved`; acked after its answer is published (at least once)."""

    def on_order_created(event: dict[str, Any]) -> None:
        answer, key, request_id = inventory_answer(event)
        # The ttl keeps the answer for a workflow that is not waiting yet (none here: the
        # saga waits in the same apply that publishes, but a service cannot know that).
        client.publish_event(
            "inventory.reserved", answer, key, request_id=request_id, ttl_ms=60_000
        )

    return client.consume_events(INVENTORY_GROUP, on_order_created, names=["order.created"])


def run_saga(client: Any, n: int, timeout_s: float = 120.0) -> list[Any]:
    """Starts n order sagas (the last orders a unicorn, which is out of stock) and watches them
    to their end; returns the workflows."""
    orders = _orders(n, tag="saga-")
    orders[-1]["items"] = ["book", "unicorn"]
    ids = [client.start_workflow("order_saga", o, correlation_id=o["orderId"]) for o in orders]
    return watch(client, ids, timeout_s)
