"""Graph JSON (``{"tasks": [...], "dataflows": [...]}``) and the seed's dependency-JSON form.

Loading collects every problem (bad shape, duplicate ids, unknown types, dataflows naming
unknown tasks) into one GraphValidationError instead of stopping at the first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from graphmesh.orchestrator.errors import (
    GraphError,
    GraphIssue,
    GraphValidationError,
    UnknownTaskTypeError,
)
from graphmesh.orchestrator.graph.dataflow import DataFlow
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.kinds import ArrayTask, CompoundTask
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

JsonGraph = dict[str, Any]
FLOW_KEYS = ("source_task", "source_port", "target_task", "target_port")
# Values JSON text gives back as they are (an equal object of the same type).
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


# -- graph JSON ----------------------------------------------------------------------------
def graph_to_json(graph: TaskGraph) -> JsonGraph:
    return {
        "tasks": [task_to_json(task) for task in graph],
        "dataflows": [_flow_to_json(flow) for flow in graph.dataflows],
    }


def _flow_to_json(flow: DataFlow) -> dict[str, str]:
    return {
        "source_task": flow.source_task,
        "source_port": flow.source_port,
        "target_task": flow.target_task,
        "target_port": flow.target_port,
    }


def task_to_json(task: Task) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": task.id,
        "type": task.type,
        "defaults": _json_value(task.defaults, task, "defaults"),
        "config": _json_value(task.config, task, "config"),
    }
    if isinstance(task, CompoundTask) and not isinstance(task, ArrayTask):
        item["subgraph"] = graph_to_json(task.subgraph)
    return item


def _json_value(value: dict[str, Any], task: Task, what: str) -> dict[str, Any]:
    """A fresh copy of ``value`` as JSON text would give it back; a flat object of plain
    scalars (most defaults and configs, often empty) is copied without the text."""
    if type(value) is dict and all(
        type(key) is str and type(item) in _JSON_SCALARS for key, item in value.items()
    ):
        return dict(value)
    try:
        return json.loads(json.dumps(value))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise GraphValidationError(
            [
                GraphIssue(
                    code="not_json",
                    task_id=task.id,
                    message=f"task {task.id!r} ({task.type}) {what} are not JSON: {exc}",
                )
            ]
        ) from None


def graph_from_json(data: Any, registry: TaskRegistry = default_registry) -> TaskGraph:
    """Build a graph from graph JSON (a dict, or a list in dependency-JSON form)."""
    if isinstance(data, list):
        return graph_from_dependency_json(data, registry)
    issues: list[GraphIssue] = []
    if not isinstance(data, Mapping) or "tasks" not in data:
        # A missing 'tasks' is a typo ("task", "nodes"), not an empty graph.
        raise GraphValidationError([_shape("the graph must be a JSON object with 'tasks'")])
    graph = TaskGraph()
    for index, item in enumerate(_list_field(data, "tasks", issues)):
        _add_task(graph, _task_from_json(item, index, registry, issues), issues)
    for index, item in enumerate(_list_field(data, "dataflows", issues)):
        _add_flow(graph, item, index, issues)
    if issues:
        raise GraphValidationError(issues)
    return graph


def loads_graph(text: str | bytes, registry: TaskRegistry = default_registry) -> TaskGraph:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # bytes may not be text at all
        raise GraphValidationError([_shape(f"graph is not valid JSON: {exc}")]) from None
    return graph_from_json(data, registry)


def _task_from_json(
    item: Any, index: int, registry: TaskRegistry, issues: list[GraphIssue]
) -> Task | None:
    if not _is_object(item):
        issues.append(_shape(f"tasks[{index}] must be an object"))
        return None
    task_id, task_type = item.get("id"), item.get("type")
    if not isinstance(task_id, str) or not task_id:
        issues.append(_shape(f"tasks[{index}] needs a non-empty string 'id'"))
        return None
    if not isinstance(task_type, str) or not task_type:
        issues.append(_shape(f"task {task_id!r} needs a non-empty string 'type'", task_id))
        return None
    for key in ("defaults", "config"):
        if key in item and not _is_object(item[key]):
            issues.append(_shape(f"task {task_id!r}: {key!r} must be an object", task_id))
            return None
    try:
        cls = registry.get(task_type)
    except UnknownTaskTypeError as exc:
        issues.append(
            GraphIssue(code="unknown_type", message=f"task {task_id!r}: {exc}", task_id=task_id)
        )
        return None
    kwargs: dict[str, Any] = {
        "id": task_id,
        "defaults": item.get("defaults"),
        "config": item.get("config"),
    }
    if issubclass(cls, CompoundTask) and not issubclass(cls, ArrayTask):
        kwargs["subgraph"] = _subgraph(item.get("subgraph"), task_id, registry, issues)
    return cls(**kwargs)


def _subgraph(
    data: Any, task_id: str, registry: TaskRegistry, issues: list[GraphIssue]
) -> TaskGraph:
    if data is None:
        return TaskGraph()
    try:
        return graph_from_json(data, registry)
    except GraphValidationError as exc:
        issues.extend(
            GraphIssue(
                code=i.code,
                message=f"in subgraph of {task_id!r}: {i.message}",
                task_id=i.task_id,
                port=i.port,
            )
            for i in exc.issues
        )
        return TaskGraph()


def _add_task(graph: TaskGraph, task: Task | None, issues: list[GraphIssue]) -> None:
    if task is None:
        return
    if task.id in graph:
        issues.append(
            GraphIssue(
                code="duplicate_id", message=f"duplicate task id {task.id!r}", task_id=task.id
            )
        )
        return
    graph.add_task(task)


def _add_flow(graph: TaskGraph, item: Any, index: int, issues: list[GraphIssue]) -> None:
    flow = _flow_from_json(item)
    if flow is None:
        issues.append(
            _shape(
                f"dataflows[{index}] must be an object with string fields {', '.join(FLOW_KEYS)}"
            )
        )
        return
    try:
        graph.add_dataflow(flow)
    except GraphError:  # it names a task the graph lacks
        missing = next(t for t in (flow.source_task, flow.target_task) if t not in graph)
        issues.append(
            GraphIssue(
                code="unknown_task",
                task_id=missing,
                message=f"dataflow {flow} names unknown task {missing!r}",
            )
        )


def _flow_from_json(item: Any) -> DataFlow | None:
    """The dataflow ``item`` describes, or ``None`` unless it is an object of four strings."""
    if not _is_object(item):
        return None
    source_task, source_port, target_task, target_port = map(item.get, FLOW_KEYS)
    if not (
        isinstance(source_task, str)
        and isinstance(source_port, str)
        and isinstance(target_task, str)
        and isinstance(target_port, str)
    ):
        return None
    return DataFlow(
        source_task=source_task,
        source_port=source_port,
        target_task=target_task,
        target_port=target_port,
    )


def _is_object(value: Any) -> bool:
    """A JSON object: a dict (checked first, as parsed JSON holds nothing else; the
    ``Mapping`` check costs several times more) or another mapping."""
    return type(value) is dict or isinstance(value, Mapping)


def _list_field(data: Mapping[str, Any], key: str, issues: list[GraphIssue]) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        issues.append(_shape(f"{key!r} must be a list"))
        return []
    return value


def _shape(message: str, task_id: str | None = None) -> GraphIssue:
    return GraphIssue(code="bad_shape", message=message, task_id=task_id)


# -- dependency JSON (seed: toDependencyJSON) ----------------------------------------------
def graph_to_dependency_json(graph: TaskGraph) -> list[dict[str, Any]]:
    """One item per task with its inputs and, per input port, where the value comes from."""
    return [_dependency_item(graph, task) for task in graph]


def _dependency_item(graph: TaskGraph, task: Task) -> dict[str, Any]:
    item = task_to_json(task)
    out: dict[str, Any] = {"id": task.id, "type": task.type, "input": item["defaults"]}
    config = dict(item["config"])
    if "name" in config:
        out["name"] = config.pop("name")
    if "provenance" in config:
        out["provenance"] = config.pop("provenance")
    if config:
        out["config"] = config
    deps: dict[str, Any] = {}
    for flow in graph.incoming(task.id):
        source = {"id": flow.source_task, "output": flow.source_port}
        existing = deps.get(flow.target_port)
        deps[flow.target_port] = source if existing is None else [*_listify(existing), source]
    if deps:
        out["dependencies"] = deps
    if "subgraph" in item:
        out["subtasks"] = graph_to_dependency_json(getattr(task, "subgraph"))  # noqa: B009
    return out


def graph_from_dependency_json(
    items: list[Any], registry: TaskRegistry = default_registry
) -> TaskGraph:
    issues: list[GraphIssue] = []
    data = _dependency_to_graph_json(items, issues)
    try:
        graph = graph_from_json(data, registry)
    except GraphValidationError as exc:
        issues.extend(exc.issues)
    if issues:
        raise GraphValidationError(issues)
    return graph


def _dependency_to_graph_json(items: list[Any], issues: list[GraphIssue]) -> JsonGraph:
    """Convert what is well-formed; record an issue for each malformed part."""
    tasks: list[Any] = []
    flows: list[Any] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            issues.append(_shape(f"dependency-JSON item {index} must be an object"))
            continue
        tasks.append(_dependency_task(item, issues))
        flows.extend(_dependency_flows(item, issues))
    return {"tasks": tasks, "dataflows": flows}


def _dependency_task(item: Mapping[str, Any], issues: list[GraphIssue]) -> dict[str, Any]:
    config = item.get("config") or {}
    if isinstance(config, Mapping):
        config = {**config, **{key: item[key] for key in ("name", "provenance") if key in item}}
    task = {
        "id": item.get("id"),
        "type": item.get("type"),
        "defaults": item.get("input") or {},
        "config": config,
    }
    subtasks = item.get("subtasks")
    if isinstance(subtasks, list):
        task["subgraph"] = subtasks  # graph_from_json converts it, prefixing its issues
    elif subtasks is not None:
        issues.append(_shape(f"task {item.get('id')!r}: 'subtasks' must be a list", _id_of(item)))
    return task


def _dependency_flows(item: Mapping[str, Any], issues: list[GraphIssue]) -> list[dict[str, Any]]:
    deps = item.get("dependencies") or {}
    task_id = item.get("id")
    if not isinstance(deps, Mapping):
        issues.append(
            _shape(
                f"task {task_id!r}: 'dependencies' must be an object of input ports", _id_of(item)
            )
        )
        return []
    flows = []
    for port, sources in deps.items():
        for source in _listify(sources):
            if not isinstance(source, Mapping):
                issues.append(
                    _shape(
                        f"task {task_id!r}: the source of input {port!r} must be an "
                        "object with 'id' and 'output'",
                        _id_of(item),
                    )
                )
                continue
            flows.append(
                {
                    "source_task": source.get("id"),
                    "source_port": source.get("output"),
                    "target_task": task_id,
                    "target_port": port,
                }
            )
    return flows


def _id_of(item: Mapping[str, Any]) -> str | None:
    task_id = item.get("id")
    return task_id if isinstance(task_id, str) else None


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
