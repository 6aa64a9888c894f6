"""Usage metering: token sums, prices (shipped and the operator's file), the meter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphmesh.orchestrator.ai.client import Generated, Usage
from graphmesh.orchestrator.ai.testing import FakeModelClient
from graphmesh.orchestrator.ai.usage import (
    MeteredModelClient,
    Price,
    PriceTable,
    TaskUsage,
    UsageMeter,
    total_usage,
)


def test_token_counts_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        Usage(input_tokens=-1)


def test_sums_keep_a_cost_when_any_part_has_one() -> None:
    priced = TaskUsage(input_tokens=1, output_tokens=2, cost_usd=0.5)
    unpriced = TaskUsage(input_tokens=10)
    assert total_usage([priced, unpriced]) == TaskUsage(
        input_tokens=11, output_tokens=2, cost_usd=0.5
    )
    assert total_usage([unpriced, unpriced]).cost_usd is None
    assert total_usage([]).empty


def test_usage_round_trips_through_json() -> None:
    usage = TaskUsage(input_tokens=3, output_tokens=4, cost_usd=1e-6)
    assert TaskUsage.from_json(json.loads(json.dumps(usage.to_json()))) == usage
    assert "cost_usd" not in TaskUsage(input_tokens=1).to_json()
    assert TaskUsage.from_json(None).empty


def test_the_shipped_table_prices_cloud_models_and_not_local_ones() -> None:
    table = PriceTable.default()
    by_model = {
        "openai:gpt-4o": Usage(input_tokens=1_000_000, output_tokens=500_000),
        "hf:all-MiniLM-L6-v2": Usage(input_tokens=7),
    }
    usage = table.task_usage(by_model)
    assert usage.input_tokens == 1_000_007 and usage.output_tokens == 500_000
    assert usage.cost_usd == pytest.approx(2.5 + 5.0)
    assert table.task_usage({"hf:x": Usage(input_tokens=1)}).cost_usd is None


def test_the_operators_file_overrides_and_adds_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    rows = {
        "openai:gpt-4o": {"input_per_million": 1.0, "output_per_million": 2.0},
        "hf:all-MiniLM-L6-v2": {"input_per_million": 0.01, "output_per_million": 0},
    }
    path.write_text(json.dumps(rows))
    table = PriceTable.from_file(path)
    assert table.price("openai:gpt-4o") == Price(input_per_million=1.0, output_per_million=2.0)
    assert table.price("hf:all-MiniLM-L6-v2") is not None
    assert table.price("anthropic:claude-sonnet-4-0") is not None  # the shipped rows stay


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[1, 2]", "JSON object"),
        ('{"m": {"input_per_million": 1}}', "'m' needs exactly"),
        ('{"m": {"input_per_million": -1, "output_per_million": 0}}', "'m'.*non-negative"),
        ('{"m": {"input_per_million": "1", "output_per_million": 0}}', "'m'.*non-negative"),
        ('{"m": {"input_per_million": Infinity, "output_per_million": 0}}', "non-negative"),
        ('{"m": {"input_per_million": true, "output_per_million": 0}}', "non-negative"),
        ("not json", "prices.json"),
    ],
)
def test_a_bad_prices_file_is_refused_naming_what_is_wrong(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=named):
        PriceTable.from_file(path)


async def test_the_meter_adds_up_every_call_per_model() -> None:
    meter = UsageMeter()
    models = MeteredModelClient(FakeModelClient(), meter)
    reply = await models.summarize("openai:gpt-4o", "one two three")
    await models.summarize("openai:gpt-4o", "four")
    await models.embed("hf:e", ["five six"])
    await models.load_model("hf:e")
    assert isinstance(reply, Generated) and reply.text == "summary: one two three"
    assert meter.by_model == {
        "openai:gpt-4o": Usage(input_tokens=4, output_tokens=6),
        "hf:e": Usage(input_tokens=2),
    }
