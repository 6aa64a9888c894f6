"""The gRPC contract: protos lint clean, committed stubs are fresh, and the stubs carry the API."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import ServiceDescriptor

from graphmesh.v1 import (
    common_pb2,
    events_pb2,
    model_pb2,
    model_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATED_MODULES = [
    f"graphmesh.v1.{name}{suffix}"
    for name in ("common", "events", "model", "orchestrator")
    for suffix in ("_pb2", "_pb2_grpc")
]
ORCHESTRATOR_RPCS = {
    "ListTaskTypes",
    "ValidateGraph",
    "CreateRun",
    "GetRun",
    "ListRuns",
    "CancelRun",
    "ResumeRun",
    "WatchRun",
    "GetTaskOutput",
    "SaveGraph",
    "GetGraph",
    "ListGraphs",
    "ExportCode",
}
MODEL_RPCS = {
    "Embed",
    "Generate",
    "GenerateStream",
    "Summarize",
    "Rewrite",
    "Translate",
    "AnswerQuestion",
    "LoadModel",
    "UnloadModel",
    "ListModels",
}


def run_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, capturing its output as text."""
    return subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def streaming_methods(service: ServiceDescriptor) -> dict[str, tuple[bool, bool]]:
    """Method name -> (client streaming, server streaming)."""
    return {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}


def test_committed_stubs_match_the_protos() -> None:
    result = run_tool(sys.executable, "proto/generate.py", "--check")
    assert result.returncode == 0, result.stderr + result.stdout


def test_buf_lint_passes(tmp_path: Path) -> None:
    # buf ships with the buf-bin package as a script beside the interpreter.
    buf = Path(sys.executable).parent / "buf"
    env = {"PATH": str(buf.parent), "HOME": str(tmp_path), "BUF_CACHE_DIR": str(tmp_path)}
    result = run_tool(str(buf), "lint", "proto", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def buf(tmp_path: Path, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "buf"
    env = {"PATH": str(tool.parent), "HOME": str(tmp_path), "BUF_CACHE_DIR": str(tmp_path)}
    return subprocess.run(
        [str(tool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_the_contract_has_no_breaking_change_against_its_baseline(tmp_path: Path) -> None:
    """``proto/baseline.json`` is the last released contract (``make proto-baseline``
    after a release): clients built on it must keep working, so only additions pass."""
    result = buf(tmp_path, "breaking", "proto", "--against", "proto/baseline.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_renamed_field(tmp_path: Path) -> None:
    copy = tmp_path / "proto"
    shutil.copytree(REPO_ROOT / "proto", copy)
    common = copy / "graphmesh" / "v1" / "common.proto"
    common.write_text(common.read_text().replace("string source_task = 1;", "string from = 1;"))
    result = buf(tmp_path, "breaking", str(copy), "--against", "proto/baseline.json")
    assert result.returncode != 0 and "source_task" in result.stdout, result.stdout


def test_generated_modules_import_in_a_fresh_interpreter_without_warnings() -> None:
    # The gencode/runtime version checks run at first import, which may have happened before
    # this test in this process; a fresh interpreter with -W error sees them.
    statement = "; ".join(f"import {module}" for module in GENERATED_MODULES)
    result = run_tool(sys.executable, "-W", "error", "-c", statement)
    assert result.returncode == 0, result.stderr


def test_orchestrator_service_has_every_rpc_and_only_watchrun_streams() -> None:
    service = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"]
    methods = streaming_methods(service)
    assert set(methods) == ORCHESTRATOR_RPCS
    assert methods["WatchRun"] == (False, True)
    assert all(methods[name] == (False, False) for name in ORCHESTRATOR_RPCS - {"WatchRun"})
    assert service.methods_by_name["WatchRun"].output_type.name == "WatchRunResponse"


def test_model_service_has_every_rpc_and_only_generatestream_streams() -> None:
    service = model_pb2.DESCRIPTOR.services_by_name["ModelService"]
    methods = streaming_methods(service)
    assert set(methods) == MODEL_RPCS
    assert methods["GenerateStream"] == (False, True)
    assert all(methods[name] == (False, False) for name in MODEL_RPCS - {"GenerateStream"})


def test_stubs_and_servicers_expose_every_rpc() -> None:
    with grpc.insecure_channel("localhost:1") as channel:
        orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        model = model_pb2_grpc.ModelServiceStub(channel)
        assert isinstance(orchestrator.WatchRun, grpc.UnaryStreamMultiCallable)
        assert isinstance(orchestrator.CreateRun, grpc.UnaryUnaryMultiCallable)
        assert isinstance(model.GenerateStream, grpc.UnaryStreamMultiCallable)
        assert all(hasattr(orchestrator, name) for name in ORCHESTRATOR_RPCS)
        assert all(hasattr(model, name) for name in MODEL_RPCS)
    assert all(
        hasattr(orchestrator_pb2_grpc.OrchestratorServiceServicer, n) for n in ORCHESTRATOR_RPCS
    )
    assert all(hasattr(model_pb2_grpc.ModelServiceServicer, n) for n in MODEL_RPCS)


def test_graph_message_mirrors_the_canonical_graph_json() -> None:
    graph_json = {
        "tasks": [
            {"id": "split", "type": "SplitTask", "defaults": {"text": "a. b."}, "config": {}},
            {
                "id": "inner",
                "type": "CompoundTask",
                "subgraph": {"tasks": [{"id": "embed", "type": "TextEmbeddingTask"}]},
            },
        ],
        "dataflows": [
            {
                "source_task": "split",
                "source_port": "parts",
                "target_task": "inner",
                "target_port": "text",
            },
        ],
    }
    graph = json_format.ParseDict(graph_json, common_pb2.Graph())
    back = json_format.MessageToDict(graph, preserving_proto_field_name=True)
    assert back == graph_json
    assert graph.tasks[1].HasField("subgraph")
    assert not graph.tasks[0].HasField("subgraph")


def test_graph_requests_take_a_message_or_json_in_one_oneof() -> None:
    as_json = orchestrator_pb2.CreateRunRequest(graph_json='{"tasks": [], "dataflows": []}')
    as_message = orchestrator_pb2.CreateRunRequest(graph=common_pb2.Graph())
    assert as_json.WhichOneof("graph_source") == "graph_json"
    assert as_message.WhichOneof("graph_source") == "graph"
    for request in (
        orchestrator_pb2.ValidateGraphRequest,
        orchestrator_pb2.SaveGraphRequest,
        orchestrator_pb2.ExportCodeRequest,
    ):
        oneof = request.DESCRIPTOR.oneofs_by_name["graph_source"]
        assert {"graph", "graph_json"} <= {field.name for field in oneof.fields}


def test_run_event_wire_format_is_stable() -> None:
    # Events are stored in the outbox and published to NATS: renumbering breaks old readers.
    numbers = {f.name: f.number for f in events_pb2.RunEvent.DESCRIPTOR.fields}
    assert numbers == {
        "run_id": 1,
        "seq": 2,
        "time": 3,
        "kind": 4,
        "task_id": 5,
        "status": 6,
        "progress": 7,
        "message": 8,
        "error": 9,
        "output_ref": 10,
        "run_status": 11,
        "details": 12,
    }


def test_task_status_names_follow_the_engine_lifecycle() -> None:
    names = [value.name for value in common_pb2.TaskStatus.DESCRIPTOR.values]
    assert names == [
        "TASK_STATUS_UNSPECIFIED",
        "TASK_STATUS_PENDING",
        "TASK_STATUS_PROCESSING",
        "TASK_STATUS_COMPLETED",
        "TASK_STATUS_ABORTING",
        "TASK_STATUS_FAILED",
        "TASK_STATUS_SKIPPED",
    ]


def test_port_default_distinguishes_unset_from_null() -> None:
    port = common_pb2.Port(id="text", value_type="text")
    assert not port.HasField("default")
    port.default.null_value = struct_pb2.NULL_VALUE
    assert port.HasField("default")
