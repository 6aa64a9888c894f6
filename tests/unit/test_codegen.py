"""Code generation: graph -> Python builder code -> graph gives the same graph JSON, for
hand-made graphs, a seeded corpus of random graphs and every example graph file."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest

from graphmesh.orchestrator.builder import ParallelTask, code_to_graph, graph_to_code
from graphmesh.orchestrator.builder.pyformat import LINE_WIDTH, literal
from graphmesh.orchestrator.errors import GraphError
from graphmesh.orchestrator.graph import (
    ERROR_PORT,
    DataFlow,
    TaskGraph,
    graph_from_json,
    graph_to_json,
)
from graphmesh.orchestrator.graph.json_format import FLOW_KEYS
from graphmesh.orchestrator.task import CompoundTask, Port, Task, ValueType, array_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class CgTextTask(Task):
    type = "CgTextTask"
    inputs = (
        Port(id="text", value_type=ValueType.TEXT, default=""),
        Port(id="n", value_type=ValueType.NUMBER, optional=True),
    )
    outputs = (
        Port(id="text", value_type=ValueType.TEXT),
        Port(id="n", value_type=ValueType.NUMBER),
    )


class CgJsonTask(Task):
    type = "CgJsonTask"
    inputs = (
        Port(id="data", value_type=ValueType.JSON, optional=True),
        Port(id="items", is_array=True, optional=True),
    )
    outputs = (Port(id="data", value_type=ValueType.JSON), Port(id="items", is_array=True))


class CgOddNamesTask(Task):
    """Port ids that cannot be plain keyword arguments, and a type name that is no method."""

    type = "cg-odd names"
    inputs = tuple(
        Port(id=name, optional=True) for name in ("class", "two words", "[x]", "self", "ünï")
    )
    outputs = (Port(id="out put"),)


class CgGroupTask(CompoundTask):
    type = "CgGroupTask"


CgTextArrayTask = array_task(CgTextTask, ["text"])
SIMPLE_TYPES: list[type[Task]] = [CgTextTask, CgJsonTask, CgOddNamesTask, CgTextArrayTask]
COMPOUND_TYPES: list[type[Task]] = [CgGroupTask, ParallelTask]


def round_trip(graph: TaskGraph) -> dict[str, Any]:
    return graph_to_json(code_to_graph(graph_to_code(graph)))


# -- hand-made graphs --------------------------------------------------------------------
def test_the_generated_code_reads_like_hand_written_builder_code() -> None:
    data = {
        "tasks": [
            {"id": "src", "type": "CgTextTask", "defaults": {"text": "hello"}, "config": {}},
            {
                "id": "j",
                "type": "CgJsonTask",
                "defaults": {"data": {"words": ["alpha", "beta", "gamma"], "limits": [1, 2.5]}},
                "config": {"name": "Collect the words", "provenance": {"source": "unit test"}},
            },
            {
                "id": "odd",
                "type": "cg-odd names",
                "defaults": {"class": 1, "ünï": None},
                "config": {},
            },
        ],
        "dataflows": [
            {
                "source_task": "src",
                "source_port": "text",
                "target_task": "j",
                "target_port": "items",
            },
            {
                "source_task": "j",
                "source_port": "[error]",
                "target_task": "odd",
                "target_port": "[x]",
            },
        ],
    }
    expected = '''\
"""Rebuilds a task graph into `builder` (written by graphmesh graph_to_code)."""

import test_codegen  # noqa: F401  (registers task types)
from graphmesh.orchestrator.builder import TaskGraphBuilder

builder = TaskGraphBuilder(auto_connect=False)
builder.cg_text(id="src", text="hello")
builder.cg_json(
    id="j",
    config={"name": "Collect the words", "provenance": {"source": "unit test"}},
    data={"words": ["alpha", "beta", "gamma"], "limits": [1, 2.5]},
)
builder.add("cg-odd names", id="odd", **{"class": 1}, ünï=None)
builder.connect("src", "text", "j", "items")
builder.connect("j", "[error]", "odd", "[x]")
'''
    code = graph_to_code(graph_from_json(data))
    assert code == expected.replace("test_codegen", CgTextTask.__module__)
    assert graph_to_json(code_to_graph(code)) == data


def test_long_values_are_split_one_item_per_line() -> None:
    words = [f"word number {i}" for i in range(12)]
    graph = TaskGraph([CgJsonTask(id="j", defaults={"data": {"words": words, "short": [1]}})])
    code = graph_to_code(graph)
    assert all(len(line) <= LINE_WIDTH for line in code.splitlines())
    assert '        "words": [\n            "word number 0",\n' in code
    assert '        "short": [1],\n' in code
    assert round_trip(graph) == graph_to_json(graph)


def test_an_empty_graph() -> None:
    code = graph_to_code(TaskGraph())
    assert code.endswith("builder = TaskGraphBuilder(auto_connect=False)\n")
    assert round_trip(TaskGraph()) == {"tasks": [], "dataflows": []}


def test_nested_compound_tasks_round_trip() -> None:
    inner = TaskGraph([CgTextTask(id="deep", defaults={"text": "d"})])
    middle = TaskGraph(
        [CgGroupTask(id="inner", subgraph=inner), CgTextTask(id="m")],
    )
    middle.add_dataflow(_flow("inner", "text", "m", "text"))
    graph = TaskGraph(
        [
            CgTextTask(id="first", defaults={"text": "a"}),
            CgGroupTask(id="outer", subgraph=middle, defaults={"text": "given"}),
            ParallelTask(id="par", subgraph=TaskGraph([CgTextTask(id="p1"), CgJsonTask(id="p2")])),
        ],
        [_flow("first", "n", "outer", "n"), _flow("outer", "text", "par", "text")],
    )
    code = graph_to_code(graph)
    assert code.index("subgraph_2 = ") < code.index("subgraph_1.cg_group(")
    assert 'builder.add("ParallelTask", id="par", subgraph=subgraph_3)' in code
    assert round_trip(graph) == graph_to_json(graph)


def test_dataflow_order_and_repeated_flows_into_an_array_port_survive() -> None:
    graph = TaskGraph([CgTextTask(id="a"), CgTextTask(id="b"), CgJsonTask(id="c")])
    for source in ("b", "a"):
        graph.add_dataflow(_flow(source, "text", "c", "items"))
    graph.add_dataflow(_flow("a", ERROR_PORT, "c", "data"))
    assert round_trip(graph)["dataflows"] == graph_to_json(graph)["dataflows"]


def test_graph_json_is_accepted_as_well_as_a_graph() -> None:
    data = graph_to_json(TaskGraph([CgTextTask(id="a", config={"timeout": 2.5})]))
    assert graph_to_json(code_to_graph(graph_to_code(data))) == data


def test_a_default_named_like_a_reserved_keyword_cannot_be_expressed() -> None:
    class CgIdPortTask(Task):
        type = "CgIdPortTask"
        inputs: ClassVar = (Port(id="id", optional=True),)

    graph = TaskGraph([CgIdPortTask(id="t", defaults={"id": 3})])
    with pytest.raises(GraphError, match="input 'id' has the name of a reserved builder keyword"):
        graph_to_code(graph)


def test_code_to_graph_needs_a_builder_variable() -> None:
    with pytest.raises(GraphError, match="no TaskGraphBuilder named 'builder'"):
        code_to_graph("graph = 1\n")


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e300, -0.0, 5e-324, 2**70])
def test_number_literals_evaluate_to_the_same_number(value: float) -> None:
    assert eval(literal(value)) == value


def test_nan_literal_evaluates_to_nan() -> None:
    assert math.isnan(eval(literal(math.nan)))


# -- a corpus of random graphs -----------------------------------------------------------
STRING_CHARS = "ab Z09_-\"'\\\n\t/é中😀{}[]#:\x00"


def random_string(rng: random.Random, longest: int = 12) -> str:
    return "".join(rng.choice(STRING_CHARS) for _ in range(rng.randint(0, longest)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(
        ["str", "long", "int", "float", "bool", "null", "list", "dict"][: 8 - 2 * (depth > 2)]
    )
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if kind == "dict":
        return {
            random_string(rng, 6): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))
        }
    scalars: dict[str, Any] = {
        "str": random_string(rng),
        "long": random_string(rng, 160),
        "int": rng.randint(-(10**20), 10**20),
        "float": rng.choice([rng.uniform(-1e6, 1e6), rng.random(), 1e300, -2.5e-300, 0.1]),
        "bool": rng.random() < 0.5,
        "null": None,
    }
    return scalars[kind]


def random_config(rng: random.Random) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if rng.random() < 0.3:
        config["name"] = random_string(rng)
    if rng.random() < 0.2:
        config["provenance"] = {random_string(rng, 5): random_json(rng, 2)}
    if rng.random() < 0.2:
        config[random_string(rng, 8)] = random_json(rng)
    return config


def random_task(rng: random.Random, index: int, depth: int) -> dict[str, Any]:
    task_id = rng.choice([f"t{index}", f"task {index}", f'q"{index}', f"d{depth}-{index}"])
    compound = depth < 2 and rng.random() < 0.2
    cls = rng.choice(COMPOUND_TYPES if compound else SIMPLE_TYPES)
    item: dict[str, Any] = {"id": task_id, "type": cls.type, "config": random_config(rng)}
    if compound:
        item["subgraph"] = random_graph(rng, depth + 1)
    # Ports of a compound task come from its subgraph, so ask a built task for them.
    ports = graph_from_json({"tasks": [{**item, "defaults": {}}]}).get_task(task_id).input_ports
    chosen = [port for port in ports if rng.random() < 0.5]
    item["defaults"] = {port.id: random_json(rng) for port in chosen}
    return item


def random_graph(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    tasks = [random_task(rng, index, depth) for index in range(rng.randint(depth > 0, 7))]
    return {"tasks": tasks, "dataflows": random_flows(rng, graph_from_json({"tasks": tasks}))}


def random_flows(rng: random.Random, graph: TaskGraph) -> list[dict[str, str]]:
    """Dataflows from earlier to later tasks between random ports (error ports included)."""
    tasks, flows = graph.tasks, []
    for _ in range(rng.randint(0, 2 * len(tasks)) if len(tasks) > 1 else 0):
        source, target = (tasks[i] for i in sorted(rng.sample(range(len(tasks)), 2)))
        if target.input_ports:
            outputs = [port.id for port in source.output_ports] + [ERROR_PORT]
            flow = _flow(
                source.id, rng.choice(outputs), target.id, rng.choice(target.input_ports).id
            )
            flows.append({key: getattr(flow, key) for key in FLOW_KEYS})
    return flows


def test_a_corpus_of_random_graphs_round_trips() -> None:
    rng = random.Random(20240611)
    compounds = 0
    for number in range(200):
        graph = graph_from_json(random_graph(rng))
        expected = graph_to_json(graph)
        code = graph_to_code(graph)
        assert graph_to_json(code_to_graph(code)) == expected, f"graph {number}:\n{code}"
        compounds += "subgraph=" in code
    assert compounds > 20


# -- example graph files -----------------------------------------------------------------
def example_graphs() -> dict[str, Any]:
    """Every ``examples/*.json`` file that holds a graph (graph JSON or dependency JSON)."""
    graphs = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("graph"), dict | list):
            data = data["graph"]
        if isinstance(data, list) or (isinstance(data, dict) and "tasks" in data):
            graphs[path.name] = data
    return graphs


def test_every_example_graph_round_trips() -> None:
    # The catalog registers the task types the examples name; it may not exist yet.
    if importlib.util.find_spec("graphmesh.orchestrator.catalog") is not None:
        importlib.import_module("graphmesh.orchestrator.catalog")
    for name, data in example_graphs().items():
        graph = graph_from_json(data)
        assert round_trip(graph) == graph_to_json(graph), name


def _flow(source: str, source_port: str, target: str, target_port: str) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )
