"""One gateway replica for the multi-process tests, run as a script:
``python gateway_replica.py CONFIG MODEL CALLS CONCURRENCY``.

It opens the gateway of CONFIG (the API key from the environment), prints ``ready``, waits
for a line on stdin, then makes CALLS generate calls to MODEL, CONCURRENCY at a time. A call
refused with ``RateLimited`` is made again after the wait it names, as the orchestrator's
queue reschedules a job. It prints one JSON line: calls done, refusals, other errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from graphmesh.services.gateway import (
    ChatRequest,
    Gateway,
    GatewayConfig,
    GatewayError,
    RateLimited,
    open_gateway,
)


async def one_call(gateway: Gateway, model: str, number: int, report: dict[str, int]) -> None:
    request = ChatRequest.prompt(f"call {number}", max_tokens=8)
    while True:
        try:
            await gateway.generate(model, request)
        except RateLimited as refusal:
            report["refusals"] += 1
            await asyncio.sleep(refusal.retry_after)
            continue
        except GatewayError:
            report["errors"] += 1
        else:
            report["done"] += 1
        return


async def main(config: Path, model: str, calls: int, concurrency: int) -> None:
    report = {"done": 0, "refusals": 0, "errors": 0}
    async with open_gateway(GatewayConfig.load(config)) as gateway:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        gate = asyncio.Semaphore(concurrency)

        async def gated(number: int) -> None:
            async with gate:
                await one_call(gateway, model, number, report)

        await asyncio.gather(*(gated(number) for number in range(calls)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
