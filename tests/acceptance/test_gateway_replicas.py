"""Three gateway processes share one provider account's limit of 60 requests a minute
through Postgres: the provider never sees more than 60 requests in any minute (it enforces
the limit itself and would answer 429), it sees the whole 60 in the first minute, and every
call completes, the refused ones rescheduled for when the shared limiter said."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from support.fake_provider import FakeProvider
from support.gateway import API_KEY, write_config

REPLICA = Path(__file__).resolve().parents[1] / "support" / "gateway_replica.py"
LIMIT = 60
MINUTE = 60.0
REPLICAS = 3
CALLS_PER_REPLICA = 30  # 90 in all: 60 in the first minute, 30 once it has passed
DEADLINE = 240.0


async def start_replica(config: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPLICA),
        str(config),
        "openai:gpt-test",
        str(CALLS_PER_REPLICA),
        "10",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_PROVIDER_KEY": API_KEY},
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n", "the replica failed to start"
    return process


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 30)
async def test_three_replicas_never_exceed_the_shared_limit(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with FakeProvider.start(api_key=API_KEY) as fake:
        fake.enforce(LIMIT, MINUTE)
        config = write_config(
            tmp_path / "gateway.toml", fake, dsn=postgres_dsn, requests_per_minute=LIMIT
        )
        async with asyncio.timeout(DEADLINE):
            replicas = [await start_replica(config) for _ in range(REPLICAS)]
            for replica in replicas:
                assert replica.stdin is not None
                replica.stdin.write(b"go\n")
                await replica.stdin.drain()
            outputs = await asyncio.gather(*(replica.communicate() for replica in replicas))
    assert all(replica.returncode == 0 for replica in replicas)
    reports = [json.loads(stdout) for stdout, _ in outputs]
    assert sum(report["done"] for report in reports) == REPLICAS * CALLS_PER_REPLICA
    assert sum(report["errors"] for report in reports) == 0
    assert sum(report["refusals"] for report in reports) > 0  # the limit did bite
    assert fake.over_limit == 0, "the provider had to refuse requests over its limit"
    assert len(fake.received) == REPLICAS * CALLS_PER_REPLICA
    assert fake.most_in_any_window(MINUTE) == LIMIT
