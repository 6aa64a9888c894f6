#!/usr/bin/env node
'use strict';
// Print graphmesh run events from NATS JetStream, one line per event, from Node.js.
//
//   npm ci
//   node subscriber.js --nats nats://127.0.0.1:4222                    # every run, then live
//   node subscriber.js --nats nats://127.0.0.1:4222 --run RUN_ID --until-done
//
// Each event is a protobuf graphmesh.v1.RunEvent on subject graphmesh.runs.<run_id>.events of
// the stream GRAPHMESH_RUNS, with the headers Nats-Msg-Id (<run_id>:<seq>) and traceparent.
// An ordered consumer replays the stream from its start, then follows it live. Stops after
// --count events, after the run's final event with --until-done, or on Ctrl-C.

const path = require('node:path');
const { parseArgs } = require('node:util');
const { connect } = require('nats');
const protobuf = require('protobufjs');

const FINAL = new Set(['RUN_STATUS_COMPLETED', 'RUN_STATUS_FAILED', 'RUN_STATUS_CANCELLED']);

function options() {
  const { values } = parseArgs({
    options: {
      nats: { type: 'string', default: process.env.GRAPHMESH_NATS_URL || 'nats://127.0.0.1:4222' },
      run: { type: 'string' },
      count: { type: 'string' },
      'until-done': { type: 'boolean', default: false },
      stream: { type: 'string', default: 'GRAPHMESH_RUNS' },
      'subject-prefix': { type: 'string', default: 'graphmesh.runs' },
      proto: { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
    },
  });
  return values;
}

// protobufjs resolves graphmesh/v1/... under --proto; google/protobuf/* are built in.
function runEventType(protoRoot) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) =>
    target.startsWith('google/protobuf/') ? target : path.join(protoRoot, target);
  root.loadSync('graphmesh/v1/events.proto', { keepCase: true });
  return root.lookupType('graphmesh.v1.RunEvent');
}

function describe(event, traceparent) {
  const parts = [`run=${event.run_id}`, `seq=${event.seq}`, event.kind.replace('RUN_EVENT_KIND_', '')];
  if (event.task_id) parts.push(`task=${event.task_id}`);
  if (event.progress) parts.push(`progress=${event.progress}%`);
  if (event.message) parts.push(`message=${JSON.stringify(event.message)}`);
  if (event.error && event.error.message) parts.push(`error=${JSON.stringify(event.error.message)}`);
  if (traceparent) parts.push(`trace=${traceparent.split('-')[1]}`);
  return parts.join(' ');
}

async function main() {
  const args = options();
  const RunEvent = runEventType(args.proto);
  const subject = `${args['subject-prefix']}.${args.run || '*'}.events`;
  const limit = args.count === undefined ? Infinity : Number(args.count);
  const nc = await connect({ servers: args.nats.split(',') });
  const stop = () => nc.drain();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const consumer = await nc.jetstream().consumers.get(args.stream, { filterSubjects: subject });
    const messages = await consumer.consume();
    let seen = 0;
    for await (const message of messages) {
      const event = RunEvent.toObject(RunEvent.decode(message.data), {
        longs: String,
        enums: String,
        defaults: true,
      });
      console.log(describe(event, message.headers && message.headers.get('traceparent')));
      seen += 1;
      if (seen >= limit || (args['until-done'] && FINAL.has(event.run_status))) break;
    }
  } finally {
    if (!nc.isClosed()) await nc.drain();
  }
}

main().catch((error) => {
  console.error(error.message);
  process.exit(2);
});
