#!/usr/bin/env node
// Registers a workflow of two SIMPLE tasks (if it is not registered yet), starts N of them and
// waits until every one has ended (WorkflowService and DefinitionService in
// protos/orchestrator/v1/), across replica failures.
//
//   node start.js --addresses host:port,host:port [--count 10] [--name node_echo_flow]
//                 [--task-type node_echo] [--interval-ms 0] [--timeout-s 120] [--lease-s 60]
//                 [--ca ca.pem]
//   (token: ORCHESTRATOR_TOKEN; registering needs the admin role, starting operator or admin)
//
// stdout, one JSON line each: {"registered": name} or {"already_registered": name};
// {"started": workflow_id, "n": i} per workflow; {"ended": workflow_id, "status": ...,
// "tasks": [...]} per workflow once it ended. Exit 0 when every workflow COMPLETED, 1 when one
// ended otherwise, 2 when the timeout passed first.
//
// Each start keeps its request id on every retry, so a start whose answer was lost in a
// failover is not started twice; the reads that follow carry the highest sequence seen
// (x-orchestrator-min-seq), so any replica finds the workflows this program just started.
"use strict";

const { clientFromArgs, parseArgs, sleep, status } = require("./orchestrator");

const args = parseArgs(process.argv.slice(2), {
  count: 10,
  name: "node_echo_flow",
  taskType: "node_echo",
  intervalMs: 0,
  timeoutS: 120,
  leaseS: 60,
});
const client = clientFromArgs(args);
const TERMINAL = ["COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT", "COMPENSATED"];

function emit(obj) {
  console.log(JSON.stringify(obj));
}

function definition() {
  const task = (ref, input) => ({
    name: args.taskType,
    taskReferenceName: ref,
    type: "SIMPLE",
    inputParameters: input,
  });
  return {
    name: args.name,
    version: 1,
    schemaVersion: 2,
    tasks: [
      task("first", { n: "${workflow.input.n}" }),
      task("second", { previous: "${first.output.echo}" }),
    ],
    outputParameters: { result: "${second.output.echo}" },
  };
}

async function register() {
  // The lease (60 s by default): a task whose worker died comes back to another one after it;
  // a worker that is still busy extends it by heartbeats.
  const taskDef = { name: args.taskType, retryCount: 2, responseTimeoutSeconds: args.leaseS };
  await client.call("DefinitionService", "RegisterTaskDefs", {
    task_def_json: [JSON.stringify(taskDef)],
  });
  try {
    await client.call("DefinitionService", "RegisterWorkflowDef", {
      definition_json: JSON.stringify(definition()),
    });
    emit({ registered: args.name });
  } catch (err) {
    if (err.code !== status.ALREADY_EXISTS) throw err;
    emit({ already_registered: args.name, detail: err.details });
  }
}

async function startAll() {
  const ids = [];
  for (let n = 0; n < args.count; n++) {
    const request = { name: args.name, input_json: JSON.stringify({ n }) };
    const response = await client.call("WorkflowService", "StartWorkflow", request);
    emit({ started: response.workflow_id, n });
    ids.push(response.workflow_id);
    if (args.intervalMs) await sleep(args.intervalMs);
  }
  return ids;
}

async function waitAll(ids, stopAt) {
  const pending = new Set(ids);
  const failed = [];
  while (pending.size && Date.now() < stopAt) {
    for (const id of [...pending]) {
      const { workflow } = await client.call("WorkflowService", "GetWorkflow", {
        workflow_id: id,
        include_tasks: true,
      });
      const wfStatus = workflow.status.replace("WORKFLOW_STATUS_", "");
      if (!TERMINAL.includes(wfStatus)) continue;
      pending.delete(id);
      if (wfStatus !== "COMPLETED") failed.push(id);
      const tasks = workflow.tasks.map((t) => ({
        ref: t.reference_task_name,
        task_id: t.task_id,
        status: t.status.replace("TASK_STATUS_", ""),
        retry_count: t.retry_count,
        worker_id: t.worker_id,
      }));
      emit({ ended: id, status: wfStatus, tasks });
    }
    if (pending.size) await sleep(250);
  }
  return { pending: [...pending], failed };
}

async function main() {
  const stopAt = Date.now() + args.timeoutS * 1000;
  await register();
  const ids = await startAll();
  const { pending, failed } = await waitAll(ids, stopAt);
  emit({ done: ids.length, failed, pending });
  client.close();
  return pending.length ? 2 : failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(JSON.stringify({ fatal: err.message }));
    process.exit(1);
  }
);
