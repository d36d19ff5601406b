#!/usr/bin/env node
// A worker for SIMPLE tasks (TaskService in protos/orchestrator/v1/tasks.proto): it long-polls
// a task type, runs each task, and completes it, across replica failures.
//
//   node worker.js --addresses host:port,host:port --task-type node_echo[,other]
//                  [--concurrency 8] [--work-ms 50] [--worker-id ID] [--ca ca.pem]
//   (token: ORCHESTRATOR_TOKEN, a token with the worker or admin role)
//
// Each task's output is {"echo": <its input>, "worker": <worker id>}. One JSON line on stdout
// per completion the cluster accepted ({"completed": task_id, ...}) and per one it refused
// ({"refused": task_id, ...}: the lease was lost, so the task is not this worker's any more).
// SIGINT/SIGTERM: stop polling, finish the tasks in hand, exit 0.
//
// How it stays correct across a failover (docs/api.md): a poll and a completion each keep their
// request id on every retry, so a retried poll returns the tasks the first one leased and a
// retried completion returns the first outcome instead of completing twice; the worker id is
// the one the tasks were leased to; a task that runs longer than a third of its lease
// (response_timeout_seconds) is heartbeated.
"use strict";

const os = require("os");
const { clientFromArgs, isRetryable, parseArgs, sleep, status } = require("./orchestrator");

const args = parseArgs(process.argv.slice(2), {
  taskType: "",
  concurrency: 8,
  workMs: 50,
  workerId: `node-${os.hostname()}-${process.pid}`,
  pollTimeoutMs: 5000,
});
if (!args.taskType) throw new Error("--task-type is required");
const client = clientFromArgs(args);
let stopping = false;

function emit(obj) {
  console.log(JSON.stringify(obj));
}

// Extends the task's lease while it runs, every third of response_timeout_seconds.
function keepLeased(task) {
  const everyMs = (Number(task.response_timeout_seconds) * 1000) / 3;
  if (!everyMs) return () => {};
  const timer = setInterval(() => {
    const request = { task_id: task.task_id, worker_id: args.workerId };
    client.call("TaskService", "HeartbeatTask", request).catch((err) => {
      emit({ heartbeat_failed: task.task_id, error: err.message });
    });
  }, everyMs);
  return () => clearInterval(timer);
}

async function work(task) {
  const release = keepLeased(task);
  try {
    await sleep(args.workMs);
    return { echo: JSON.parse(task.input_json || "{}"), worker: args.workerId };
  } finally {
    release();
  }
}

async function handle(task) {
  const output = await work(task);
  const request = {
    task_id: task.task_id,
    worker_id: args.workerId,
    output_json: JSON.stringify(output),
  };
  try {
    // Retried inside with this request's id until the cluster decides.
    await client.call("TaskService", "CompleteTask", request, { budgetMs: 120000 });
    emit({ completed: task.task_id, workflow: task.workflow_id, ref: task.reference_task_name });
  } catch (err) {
    if (isRetryable(err, err)) {
      // No replica decided within the budget: the lease runs out and the task comes again.
      emit({ gave_up: task.task_id, workflow: task.workflow_id, error: err.message });
    } else if (err.code === status.FAILED_PRECONDITION) {
      // Late or duplicate: the lease ended and the task is someone else's (or timed out).
      emit({ refused: task.task_id, workflow: task.workflow_id, reason: err.details });
    } else {
      throw err;
    }
  }
}

async function pollLoop(taskType) {
  while (!stopping) {
    const request = {
      task_type: taskType,
      worker_id: args.workerId,
      count: args.concurrency,
      timeout_ms: args.pollTimeoutMs,
    };
    let tasks;
    try {
      // The attempt's deadline must outlast the long poll.
      const response = await client.call("TaskService", "PollTasks", request, {
        timeoutMs: args.pollTimeoutMs + 5000,
        budgetMs: 120000,
      });
      tasks = response.tasks;
    } catch (err) {
      if (stopping) break;
      // A final error (e.g. PERMISSION_DENIED): nothing a retry would fix.
      if (!isRetryable(err, err)) throw err;
      // No replica answered within the budget: poll again (tasks that poll leased come back
      // when their lease ends).
      console.error(JSON.stringify({ poll_gave_up: taskType, error: err.message }));
      continue;
    }
    // Leased to this worker now: run them even when asked to stop, so none waits on a lease.
    await Promise.all(tasks.map(handle));
  }
}

function stop() {
  if (stopping) return;
  stopping = true;
  console.error(JSON.stringify({ stopping: args.workerId }));
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const types = args.taskType
  .split(",")
  .map((t) => t.trim())
  .filter(Boolean);
console.error(JSON.stringify({ worker: args.workerId, polling: types }));
Promise.all(types.map(pollLoop)).then(
  () => {
    client.close();
    console.error(JSON.stringify({ stopped: args.workerId }));
    process.exit(0);
  },
  (err) => {
    console.error(JSON.stringify({ fatal: err.message }));
    process.exit(1);
  }
);
