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
    with open(os.path.join(DEMO_DIR, "order_workflow.json")) as f:
        client.register_workflow_def(json.load(f), overwrite=True)


def run_demo(access: Access, workflows: int = 5, keep_workers: bool = False) -> None:
    """Registers, works and starts the demo through `access` (its token needs the admin role:
    the demo registers definitions, starts workflows and polls tasks)."""
    rng = random.Random()
    client = access.client(retry_budget_s=30.0)
    register(client)
    print("registered task definitions and workflow 'order_fulfillment' (deploy/local/demo/)")
    worker = build_worker(client, rng)
    worker.start()
    ids = []
    for i in range(workflows):
        order = f"o-{int(time.time()) % 100000}-{i}"
        ids.append(
            client.start_workflow(
                "order_fulfillment",
                {
                    "orderId": order,
                    "items": ["book", "pen"][: 1 + i % 2],
                    "customer": f"customer-{i}",
                    "address": f"{i} Main Street",
                },
            )
        )
    print(f"started {len(ids)} workflows; progress (task statuses reserve/charge/ship):")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            lines = []
            done = 0
            for wid in ids:
                wf = client.get_workflow(wid)
                steps = " ".join(
                    f"{t.reference_task_name}:{t.status}"
                    + (f"(retry {t.retry_count})" if t.retry_count else "")
                    for t in wf.tasks
                )
                lines.append(f"  {wid[:8]} {wf.status:10} {steps}")
                done += wf.is_terminal
            print("\n".join(lines), flush=True)
            if done == len(ids):
                break
            print("", flush=True)
            time.sleep(1.0)
        for wid in ids:
            wf = client.get_workflow(wid, include_tasks=False)
            print(f"{wid} {wf.status} output={json.dumps(wf.output)}")
        if keep_workers:
            print("demo workers keep running; Ctrl-C to stop", file=sys.stderr)
            while True:
                time.sleep(1)
    finally:
        if not keep_workers:
            worker.stop()
        client.close()
