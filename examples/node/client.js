#!/usr/bin/env node
'use strict';
// Drive a graphmesh orchestrator from Node.js over gRPC: list the task types, submit a graph,
// stream its events (WatchRun) until the run ends, then read every task's output.
//
//   npm ci
//   node client.js --address 127.0.0.1:50051 --graph graph.json [--token TOKEN]
//                  [--input text="Some text"] [--proto ../../proto]
//
// Prints one line per event and, at the end, one JSON line:
//   {"run_id": ..., "status": "RUN_STATUS_COMPLETED", "task_types": N, "outputs": {...}}
// Exits 0 when the run completed, 1 when it did not, 2 on a bad call (the gRPC status is
// printed, e.g. INVALID_ARGUMENT with the field violations of an invalid graph).

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const { toStruct, fromStruct } = require('./structs');

const DEADLINE_MS = 30_000;
const FINAL = new Set(['RUN_STATUS_COMPLETED', 'RUN_STATUS_FAILED', 'RUN_STATUS_CANCELLED']);

function options() {
  const { values } = parseArgs({
    options: {
      address: { type: 'string', default: process.env.GRAPHMESH_ADDRESS || '127.0.0.1:50051' },
      token: { type: 'string', default: process.env.GRAPHMESH_TOKEN || '' },
      graph: { type: 'string' },
      input: { type: 'string', multiple: true, default: [] },
      proto: { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
    },
  });
  if (!values.graph) throw new Error('--graph FILE is required');
  return values;
}

function connect({ address, proto }) {
  const definition = loader.loadSync('graphmesh/v1/orchestrator.proto', {
    includeDirs: [proto],
    keepCase: true, // graphmesh fields keep their names: run_id, task_id, graph_json ...
    longs: String, // int64 (seq) as strings: JavaScript numbers are not 64-bit
    enums: String, // "RUN_STATUS_COMPLETED", not 3
    defaults: true,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).graphmesh.v1;
  return new v1.OrchestratorService(address, grpc.credentials.createInsecure());
}

// `--input port=value` reaches every root task with that port; `--input task.port=value`
// one task. Values are parsed as JSON when they are JSON, else taken as text.
function runInputs(pairs) {
  const byTask = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`--input needs PORT=VALUE, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, at);
    const dot = key.lastIndexOf('.');
    const [task, port] = dot < 0 ? ['*', key] : [key.slice(0, dot), key.slice(dot + 1)];
    (byTask[task] ||= {})[port] = parseValue(pair.slice(at + 1));
  }
  return Object.fromEntries(Object.entries(byTask).map(([task, v]) => [task, toStruct(v)]));
}

function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function caller(client, token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.add('authorization', `Bearer ${token}`);
  const deadline = () => ({ deadline: new Date(Date.now() + DEADLINE_MS) });
  const unary = (method, request) =>
    new Promise((resolve, reject) => {
      client[method](request, metadata, deadline(), (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  const watch = (request) => client.WatchRun(request, metadata); // no deadline: a run may be long
  return { unary, watch };
}

function describe(event) {
  const parts = [`seq=${event.seq}`, event.kind.replace('RUN_EVENT_KIND_', '')];
  if (event.task_id) parts.push(`task=${event.task_id}`);
  if (event.progress) parts.push(`progress=${event.progress}%`);
  if (event.message) parts.push(`message=${JSON.stringify(event.message)}`);
  if (event.error && event.error.message) parts.push(`error=${JSON.stringify(event.error.message)}`);
  return parts.join(' ');
}

// Follows the run's events; resolves with the run status of the last event seen.
function follow(watch, runId) {
  return new Promise((resolve, reject) => {
    let status = 'RUN_STATUS_UNSPECIFIED';
    const stream = watch({ run_id: runId, from_seq: 1 });
    stream.on('data', ({ event }) => {
      console.log(describe(event));
      status = event.run_status;
      if (FINAL.has(status)) stream.cancel(); // the run ended: stop listening
    });
    stream.on('error', (error) => (error.code === grpc.status.CANCELLED ? resolve(status) : reject(error)));
    stream.on('end', () => resolve(status));
  });
}

async function main() {
  const args = options();
  const client = connect(args);
  const { unary, watch } = caller(client, args.token);
  try {
    const { task_types: types } = await unary('ListTaskTypes', {});
    const graphJson = fs.readFileSync(args.graph, 'utf8');
    const { run } = await unary('CreateRun', {
      graph_json: graphJson,
      inputs: runInputs(args.input),
      labels: { client: 'node' },
    });
    console.log(`run ${run.run_id} created with ${run.tasks.length} tasks`);
    const status = await follow(watch, run.run_id);
    const outputs = {};
    const { run: finished } = await unary('GetRun', { run_id: run.run_id });
    for (const task of finished.tasks) {
      if (task.status !== 'TASK_STATUS_COMPLETED') continue;
      const { output } = await unary('GetTaskOutput', { run_id: run.run_id, task_id: task.task_id });
      outputs[task.task_id] = fromStruct(output);
    }
    console.log(JSON.stringify({ run_id: run.run_id, status, task_types: types.length, outputs }));
    return status === 'RUN_STATUS_COMPLETED' ? 0 : 1;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error.code !== undefined ? `${grpc.status[error.code]}: ${error.details}` : error.message);
    process.exit(2);
  },
);
