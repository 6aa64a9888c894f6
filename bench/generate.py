"""Tokens per second of GenerateStream with 8 concurrent streams, against in-process streams.

- ``server_tokens_per_s``: a ``graphmesh serve model-server`` process with SmolLM2-135M
  (stream concurrency ``--concurrency``); 8 clients each stream one answer of up to
  ``--max-new-tokens`` tokens; output tokens (from each stream's ``usage``) over wall time.
  ``first_token_p50_ms``: time from the call to its first text chunk.
- ``inprocess_tokens_per_s``: the same 8 generations through the backend's ``stream`` in
  this process, ``--concurrency`` at a time on threads, no gRPC.

Prints one JSON line.
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
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from support.model_server import SMOLLM2, model_server_process

from graphmesh.model_server.backends.base import ChatMessage, LoadOptions, Sampling
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.v1 import model_pb2 as pb
from graphmesh.v1 import model_pb2_grpc

STREAMS = 8
PROMPTS = [
    "Describe the water cycle.",
    "Why is the sky blue?",
    "Give three tips for learning a language.",
    "What does a compiler do?",
    "Explain photosynthesis simply.",
    "What is a task graph?",
    "How do bees make honey?",
    "Why do we have seasons?",
]


async def drive(address: str, max_new_tokens: int) -> tuple[float, list[float]]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        first_tokens: list[float] = []

        async def one(prompt: str) -> int:
            request = pb.GenerateStreamRequest(
                model=SMOLLM2,
                prompt=prompt,
                params=pb.GenerationParams(max_new_tokens=max_new_tokens),
            )
            started = time.perf_counter()
            tokens = 0
            async for chunk in stub.GenerateStream(request):
                if chunk.text_delta and len(first_tokens) < STREAMS * 2 and tokens == 0:
                    first_tokens.append(time.perf_counter() - started)
                    tokens = -1
                if chunk.HasField("usage"):
                    tokens = chunk.usage.output_tokens
            return tokens

        started = time.perf_counter()
        counts = await asyncio.gather(*(one(p) for p in PROMPTS[:STREAMS]))
        return sum(counts) / (time.perf_counter() - started), first_tokens


def served(device: str, concurrency: int, max_new_tokens: int) -> tuple[float, list[float]]:
    text = (
        f'[[models]]\nname = "{SMOLLM2}"\ndevice = "{device}"\n'
        f"[models.batching]\nconcurrency = {concurrency}\n"
    )
    with tempfile.TemporaryDirectory() as directory:
        with model_server_process(Path(directory), text, ready_models=1) as server:
            return asyncio.run(drive(server.address, max_new_tokens))


def in_process(device: str, concurrency: int, max_new_tokens: int) -> float:
    registry = ModelRegistry(options={SMOLLM2: LoadOptions(device=device)})
    model = registry.chat_model(SMOLLM2)
    sampling = Sampling(max_new_tokens=max_new_tokens)

    def one(prompt: str) -> int:
        messages = [ChatMessage(role="user", content=prompt)]
        return model.stream(
            messages, sampling, lambda text: None, lambda: False
        ).usage.output_tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        counts = list(pool.map(one, PROMPTS[:STREAMS]))
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
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
    inprocess = in_process(args.device, args.concurrency, args.max_new_tokens)
    server, first_tokens = served(args.device, args.concurrency, args.max_new_tokens)
    print(
        json.dumps(
            {
                "bench": "generate_stream",
                "server_tokens_per_s": round(server, 1),
                "inprocess_tokens_per_s": round(inprocess, 1),
                "ratio_to_inprocess": round(server / inprocess, 3),
                "first_token_p50_ms": round(statistics.median(first_tokens) * 1000, 1),
                "streams": STREAMS,
                "concurrency": args.concurrency,
                "max_new_tokens": args.max_new_tokens,
                "device": args.device,
                "threads": args.threads or "default",
            }
        )
    )


if __name__ == "__main__":
    main()
