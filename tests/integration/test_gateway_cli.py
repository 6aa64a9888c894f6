"""``graphmesh serve gateway --config FILE`` as an operator runs it: the example config
serves its models (health SERVING per service, reflection, ListModels), stops cleanly on
SIGTERM; a config or key problem stops it at once with a message naming the setting, and
never the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.gateway_service import gateway_process

from graphmesh.services.gateway.servicer import SERVICE_NAME
from graphmesh.v1 import model_pb2, model_pb2_grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"
KEYS = {"OPENAI_API_KEY": "sk-example-openai-1234", "ANTHROPIC_API_KEY": "sk-ant-example-5678"}


async def test_the_example_config_serves_its_models(tmp_path: Path) -> None:
    async with gateway_process(EXAMPLE, log=tmp_path / "gateway.log", env=KEYS) as gateway:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", SERVICE_NAME):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            listed = await model_pb2_grpc.ModelServiceStub(channel).ListModels(
                model_pb2.ListModelsRequest()
            )
        assert {model.name for model in listed.models} == {
            "openai:gpt-4o-mini",
            "openai:text-embedding-3-small",
            "anthropic:claude-sonnet-4-0",
        }
        assert "python_gc_objects_collected_total" in gateway.scrape()
        assert await gateway.stop() == 0
    log = (tmp_path / "gateway.log").read_text(encoding="utf-8")
    assert all(key not in log for key in KEYS.values())


def serve(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "graphmesh.cli", "serve", "gateway", "--config", str(config)]
    return subprocess.run(
        [*command, "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_a_missing_key_or_bad_config_stops_it_naming_the_setting(tmp_path: Path) -> None:
    missing = serve(EXAMPLE, {"OPENAI_API_KEY": KEYS["OPENAI_API_KEY"]})
    assert missing.returncode == 2
    assert "ANTHROPIC_API_KEY" in missing.stderr
    assert KEYS["OPENAI_API_KEY"] not in missing.stderr + missing.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            "requests_per_minute = 500", "requests_per_minute = -1"
        ),
        encoding="utf-8",
    )
    refused = serve(bad, KEYS)
    assert refused.returncode == 2
    assert "requests_per_minute" in refused.stderr
    assert serve(tmp_path / "absent.toml", KEYS).returncode == 2
