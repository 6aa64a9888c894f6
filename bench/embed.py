"""Embeddings per second through the model server: 64 concurrent gRPC clients, one sentence each.

Three figures, measured in the same run on the same device:

- ``server_per_s``: a ``graphmesh serve model-server`` process with MiniLM and dynamic
  batching (max batch 64, ``--delay-ms``); 64 client coroutines (in ``--client-processes``
  processes) each send one-sentence Embed calls back to back for ``--seconds``; p50/p99
  latency of those calls.
- ``inprocess_per_s`` (the limit): the same model called in this process with full batches
  of 64 sentences, no gRPC, no queueing.
- ``unbatched_per_s``: the same server with batching off (``max_batch_size = 1``).

Targets: ``ratio_to_inprocess`` >= 0.85, ``ratio_to_unbatched`` >= 3. ``--device cuda`` runs
model and server on the GPU. Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue``: drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import grpc
from support.model_server import MINILM, model_server_process

from graphmesh.model_server.backends.base import LoadOptions
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.v1 import model_pb2 as pb
from graphmesh.v1 import model_pb2_grpc

CLIENTS = 64
BATCH = 64
# The batched server's max_queue_delay_ms by device: once a batch ends, the items queued
# meanwhile wait this long for the callers it answered. On a busy 2-core CPU their answers
# and next requests take several ms (2 ms: 0.87 of in-process, 10 ms: 0.92), against a batch
# of over 100 ms; a GPU's batch takes a few ms, so its window stays short.
DELAY_MS = {"cpu": 10.0, "cuda": 2.0}
WORDS = (
    "graph task model server batch queue token stream vector search answer question "
    "summary river mountain city music science history language garden window coffee"
).split()


def sentences(count: int) -> list[str]:
    """Distinct sentences of 10-14 words, so no two requests are the same text."""
    return [
        " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(10 + i % 5)) + f" #{i}"
        for i in range(count)
    ]


def config(device: str, max_batch_size: int, delay_ms: float, concurrency: int) -> str:
    return (
        f'[[models]]\nname = "{MINILM}"\ndevice = "{device}"\n'
        f"[models.batching]\nmax_batch_size = {max_batch_size}\n"
        f"max_queue_delay_ms = {delay_ms}\nmax_queue_size = 100000\n"
        f"concurrency = {concurrency}\n"
    )


async def drive(
    address: str, seconds: float, clients: range = range(CLIENTS), start_at: float | None = None
) -> tuple[int, list[float]]:
    """``clients`` (indexes of the 64) sending one sentence per call for ``seconds`` from
    ``start_at`` (wall clock; now if ``None``): calls per second, latencies (s)."""
    texts = sentences(4096)
    latencies: list[float] = []
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, len(clients) // 8))]
    stubs = [model_pb2_grpc.ModelServiceStub(channel) for channel in channels]
    await stubs[0].Embed(pb.EmbedRequest(model=MINILM, texts=["warm up"]))
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
    stop = time.perf_counter() + seconds

    async def client(index: int) -> None:
        stub = stubs[index % len(stubs)]
        n = index
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await stub.Embed(pb.EmbedRequest(model=MINILM, texts=[texts[n % len(texts)]]))
            latencies.append(time.perf_counter() - started)
            n += CLIENTS

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in clients))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return int(len(latencies) / elapsed), latencies


def _drive_share(address: str, seconds: float, clients: range, start_at: float) -> list[float]:
    """One client process's share of the 64 clients (run in a child process)."""
    return asyncio.run(drive(address, seconds, clients, start_at))[1]


def load(address: str, seconds: float, processes: int) -> tuple[int, list[float]]:
    """The 64 clients, spread over ``processes`` client processes (one: this process)."""
    if processes <= 1:
        return asyncio.run(drive(address, seconds))
    shares = [range(i, CLIENTS, processes) for i in range(processes)]
    start_at = time.time() + 3.0  # every process connected and warmed up by then
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(_drive_share, address, seconds, s, start_at) for s in shares]
        latencies = [latency for future in futures for latency in future.result()]
    return int(len(latencies) / seconds), latencies


def served(
    device: str,
    max_batch_size: int,
    seconds: float,
    *,
    delay_ms: float = 0.0,
    concurrency: int = 1,
    processes: int = 1,
) -> tuple[int, list[float]]:
    with tempfile.TemporaryDirectory() as directory:
        text = config(device, max_batch_size, delay_ms, concurrency)
        with model_server_process(Path(directory), text, ready_models=1) as server:
            return load(server.address, seconds, processes)


def in_process(device: str, seconds: float) -> int:
    registry = ModelRegistry(options={MINILM: LoadOptions(device=device)})
    model = registry.embedder(MINILM)
    texts = sentences(4096)
    model.embed_counted(texts[:BATCH])
    done, n = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.embed_counted(texts[n : n + BATCH])
        done += BATCH
        n = (n + BATCH) % (len(texts) - BATCH)
    return int(done / (time.perf_counter() - started))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="batches the batched server runs at once"
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        help="the batched server's max_queue_delay_ms (default: 10 on cpu, 2 on cuda: long "
        "enough for the callers a batch answered to send again and join the next one)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes the 64 clients are spread over (a Python gRPC client process tops "
        "out at a few thousand calls a second: use several where the model is faster)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads in the server and the reference (0: torch's default); on a shared "
        "machine 1 avoids OpenMP threads spinning against other processes",
    )
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the server processes inherit it
        import torch

        torch.set_num_threads(args.threads)
    # The reference is taken before and after the servers and the better kept, so a burst
    # of load from elsewhere on a shared machine does not flatter the server's ratio.
    delay_ms = args.delay_ms if args.delay_ms is not None else DELAY_MS[args.device]
    processes = args.client_processes
    first = in_process(args.device, args.seconds / 2)
    server, latencies = served(
        args.device,
        64,
        args.seconds,
        delay_ms=delay_ms,
        concurrency=args.concurrency,
        processes=processes,
    )
    unbatched, _ = served(args.device, 1, args.seconds, processes=processes)
    inprocess = max(first, in_process(args.device, args.seconds / 2))
    print(
        json.dumps(
            {
                "bench": "embed",
                "server_per_s": server,
                "inprocess_per_s": inprocess,
                "unbatched_per_s": unbatched,
                "ratio_to_inprocess": round(server / inprocess, 3),
                "ratio_to_unbatched": round(server / max(unbatched, 1), 2),
                "p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                "device": args.device,
                "threads": args.threads or "default",
                "concurrency": args.concurrency,
                "max_queue_delay_ms": delay_ms,
                "client_processes": processes,
                "clients": CLIENTS,
                "seconds": args.seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
