"""The ``graphmesh`` CLI through typer's runner: catalog, validation, codegen, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphmesh.cli import app
from graphmesh.orchestrator.builder import code_to_graph
from graphmesh.orchestrator.graph import graph_to_json, loads_graph

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_tasks_lists_the_catalog_as_json() -> None:
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["type"]: entry for entry in json.loads(result.output)}
    assert {"TextEmbeddingTask", "JavaScriptTask", "SqliteInsertTask"} <= set(entries)
    embed = entries["TextEmbeddingTask"]
    assert [port["id"] for port in embed["inputs"]] == ["model", "text"]
    assert embed["outputs"][0]["json_schema"] == {"type": "array", "items": {"type": "number"}}


def test_tasks_table_shows_ports() -> None:
    result = runner.invoke(app, ["tasks"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "DocumentSplitterTask" in result.output and "paragraphs" in result.output


def test_validate_accepts_every_example() -> None:
    for graph in sorted((ROOT / "examples").glob("*.json")):
        result = runner.invoke(app, ["validate", str(graph)])
        assert result.exit_code == 0, result.output


def test_validate_names_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "a", "type": "TextEmbeddingTask"},
                    {"id": "b", "type": "NoSuchTask"},
                    {"id": "a", "type": "DebugLogTask"},
                ],
                "dataflows": [],
            }
        )
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "unknown task type 'NoSuchTask'" in result.output
    assert "duplicate task id 'a'" in result.output


def test_validate_reports_a_missing_required_input(tmp_path: Path) -> None:
    graph = tmp_path / "missing.json"
    graph.write_text(json.dumps({"tasks": [{"id": "embed", "type": "TextEmbeddingTask"}]}))
    result = runner.invoke(app, ["validate", str(graph)])
    assert result.exit_code == 1
    assert "'embed'" in result.output and "'text'" in result.output


def test_run_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["run", str(broken)])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_run_reports_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_run_rejects_a_malformed_input_option() -> None:
    result = runner.invoke(
        app, ["run", str(ROOT / "examples/semantic_search.json"), "-i", "novalue"]
    )
    assert result.exit_code != 0
    assert "KEY=VALUE" in result.output


@pytest.mark.parametrize(
    "name", ["seed_pipeline.json", "semantic_search.json", "summarize_translate.json"]
)
def test_codegen_output_rebuilds_the_same_graph(name: str) -> None:
    source = (ROOT / "examples" / name).read_text()
    result = runner.invoke(app, ["codegen", str(ROOT / "examples" / name)])
    assert result.exit_code == 0, result.output
    assert graph_to_json(code_to_graph(result.output)) == graph_to_json(loads_graph(source))


def test_run_without_models_prints_the_result_table(tmp_path: Path) -> None:
    graph = tmp_path / "js.json"
    graph.write_text(
        json.dumps(
            {
                "tasks": [
                    {
                        "id": "square",
                        "type": "JavaScriptTask",
                        "defaults": {"code": "return input * input", "input": 7},
                    },
                ]
            }
        )
    )
    result = runner.invoke(
        app, ["run", str(graph), "--json", "--state-dir", str(tmp_path / "state")]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "COMPLETED"
    assert payload["outputs"]["square"] == {"output": 49}
