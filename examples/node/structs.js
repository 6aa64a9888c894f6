'use strict';
// google.protobuf.Struct <-> plain JSON for @grpc/proto-loader messages.
//
// proto-loader (protobufjs underneath) reads the well-known Struct/Value/ListValue types with
// their camelCase field names (`stringValue`, `numberValue`, `structValue`, `listValue`,
// `boolValue`, `nullValue`) even when the service protos are loaded with `keepCase: true`,
// where every graphmesh field keeps its snake_case name (`run_id`, `task_id`). These helpers
// are the one place that knows it.

function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`not a finite number: ${value}`);
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`cannot send a ${typeof value} as JSON`);
  }
}

function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

function fromValue(value) {
  if (!value) return null;
  switch (value.kind) {
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return (value.listValue.values || []).map(fromValue);
    default:
      return null; // nullValue, or unset
  }
}

function fromStruct(struct) {
  const object = {};
  for (const [key, value] of Object.entries((struct && struct.fields) || {})) {
    object[key] = fromValue(value);
  }
  return object;
}

module.exports = { toStruct, fromStruct, toValue, fromValue };
