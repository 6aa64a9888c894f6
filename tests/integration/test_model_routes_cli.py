"""``graphmesh serve orchestrator`` refuses bad model settings at start, naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GRAPHMESH = str(Path(sys.executable).parent / "graphmesh")


def serve(**env: str) -> subprocess.CompletedProcess[str]:
    command = [GRAPHMESH, "serve", "orchestrator", "--no-auth", "--listen", "127.0.0.1:0"]
    environment = {**os.environ, **env}
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("routes", "named"),
    [("hf=x:1", "prefix 'hf'"), ("hf:=a:1;hf:=b:1", "configured twice"), ("hf:=", "no endpoints")],
)
def test_bad_model_routes_stop_the_start_naming_the_setting(routes: str, named: str) -> None:
    result = serve(GRAPHMESH_MODEL_ROUTES=routes)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1
    assert "GRAPHMESH_MODEL_ROUTES" in said and named in said
    assert "listening on" not in said


def test_a_bad_prices_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"openai:gpt-4o": {"input_per_million": 1}}')
    result = serve(GRAPHMESH_MODEL_PRICES_FILE=str(prices))
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1
    assert "prices.json" in said and "'openai:gpt-4o'" in said
