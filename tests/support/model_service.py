"""A ModelService on loopback that records its calls, for the gRPC ModelClient's tests.

:func:`start_fake_model_server` starts one (grpc.aio, a free port) and returns the servicer,
its address and the server; ``fail`` maps a method name to a coroutine that aborts the call
(or to a sequence of them, one per call, ``None`` letting that call through).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from graphmesh.v1 import model_pb2, model_pb2_grpc


@dataclass
class FakeModelServer(model_pb2_grpc.ModelServiceServicer):
    """A ModelService that records what it was sent; ``fail`` makes a method abort."""

    name: str
    calls: list[tuple[str, dict[str, str], float | None]] = field(default_factory=list)
    fail: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0

    async def _seen(self, method: str, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append((method, metadata, context.time_remaining()))
        if self.delay:
            await asyncio.sleep(self.delay)
        failure = self.fail.get(method)
        if isinstance(failure, list):  # one per call; None lets that call through
            failure = failure.pop(0) if failure else None
        if failure is not None:
            await failure(context)

    async def Embed(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._seen("Embed", context)
        vectors = [model_pb2.Embedding(values=[float(len(t)), 1.0]) for t in request.texts]
        usage = model_pb2.Usage(input_tokens=sum(len(t.split()) for t in request.texts))
        return model_pb2.EmbedResponse(embeddings=vectors, usage=usage, dimensions=2)

    async def Summarize(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._seen("Summarize", context)
        usage = model_pb2.Usage(input_tokens=7, output_tokens=3)
        return model_pb2.SummarizeResponse(summary=f"{self.name}: {request.text}", usage=usage)

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._seen("Generate", context)
        text = f"{request.prompt}/{request.params.max_new_tokens}"
        return model_pb2.GenerateResponse(
            text=text, usage=model_pb2.Usage(input_tokens=2, output_tokens=5)
        )

    async def LoadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._seen("LoadModel", context)
        info = model_pb2.ModelInfo(
            name=request.model.removeprefix("hf:"),
            provider="transformers",
            task_kinds=[model_pb2.MODEL_TASK_KIND_EMBED],
            dimensions=2,
            loaded=True,
        )
        return model_pb2.LoadModelResponse(model=info)


async def start_fake_model_server(
    name: str, **kwargs: Any
) -> tuple[FakeModelServer, str, grpc.aio.Server]:
    servicer = FakeModelServer(name, **kwargs)
    server = grpc.aio.server()
    model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return servicer, f"127.0.0.1:{port}", server


def retry_info_abort(seconds: float, message: str = "queue full") -> Any:
    """An abort with RESOURCE_EXHAUSTED and ``google.rpc.RetryInfo`` of ``seconds``."""

    async def abort(context: grpc.aio.ServicerContext) -> None:
        delay = duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        await context.abort_with_status(rpc_status.to_status(status))

    return abort
