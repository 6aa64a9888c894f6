"""``GrpcModelClient``: the engine's ModelClient over ModelService, routed by model prefix.

``async with GrpcModelClient(routes) as models:`` opens one channel per endpoint. Each call
picks the pool of the model's prefix (:mod:`.routes`), a replica of it (:mod:`.pool`), and
fails over to the next replica when one does not answer. A call carries

- a deadline: what is left of the task's timeout, else ``call_timeout`` (every call has one);
- ``x-graphmesh-run-id``, ``x-graphmesh-task-id`` and ``x-graphmesh-tenant`` metadata from
  the runner's :data:`~graphmesh.orchestrator.ai.scope.current_scope`;
- trace context, through the interceptors the composition root passes (OpenTelemetry's).

Failures become ``ModelError`` by one table (:mod:`.errors`). Token counts come back in every
result's ``usage``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import grpc

from graphmesh.orchestrator.ai.client import Embedded, Generated, ModelError, ModelInfo, Usage
from graphmesh.orchestrator.ai.scope import current_scope
from graphmesh.orchestrator.models.errors import FAILOVER, model_error
from graphmesh.orchestrator.models.pool import Replica, ReplicaPool
from graphmesh.orchestrator.models.routes import ModelRoutes, shown
from graphmesh.v1 import model_pb2

MAX_HEADER = 512
_HEADER_SAFE = "/:@-._~!$&'()*+,;=[]{}|^`<>\"#? "
_TASK_KINDS = {
    model_pb2.MODEL_TASK_KIND_EMBED: "embed",
    model_pb2.MODEL_TASK_KIND_GENERATE: "generate",
    model_pb2.MODEL_TASK_KIND_SUMMARIZE: "summarize",
    model_pb2.MODEL_TASK_KIND_REWRITE: "rewrite",
    model_pb2.MODEL_TASK_KIND_TRANSLATE: "translate",
    model_pb2.MODEL_TASK_KIND_ANSWER_QUESTION: "answer_question",
}


class GrpcModelClient:
    """A ModelClient whose models run on model servers and gateways."""

    def __init__(
        self,
        routes: ModelRoutes,
        *,
        call_timeout: float = 300.0,
        down_s: float = 5.0,
        interceptors: Sequence[Any] = (),
    ) -> None:
        self.routes = routes
        self.call_timeout = call_timeout
        self._down_s = down_s
        self._interceptors = tuple(interceptors)
        self._pools: dict[str, ReplicaPool] = {}

    async def __aenter__(self) -> Self:
        self._pools = {
            prefix: ReplicaPool(
                prefix, targets, down_s=self._down_s, interceptors=self._interceptors
            )
            for prefix, targets in self.routes.pools.items()
        }
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.aclose()

    def pool(self, model: str) -> ReplicaPool:
        """The pool serving ``model`` (UnknownModelRouteError names the prefixes there are)."""
        if not self._pools and self.routes.pools:
            raise ModelError("GrpcModelClient is not open: use 'async with GrpcModelClient()'")
        return self._pools[self.routes.prefix_for(model)]

    # -- ModelClient -----------------------------------------------------------------------
    async def load_model(self, model: str) -> ModelInfo:
        """Load ``model`` on every replica of its pool; a replica that is down is skipped
        (it loads the model on first use when it comes back), but one must succeed."""
        pool = self.pool(model)
        request = model_pb2.LoadModelRequest(model=model)
        calls = [self._on(replica, model, "LoadModel", request) for replica in pool.replicas]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        loaded = [o for o in outcomes if isinstance(o, model_pb2.LoadModelResponse)]
        unanswered: list[_Unanswered] = []
        for replica, outcome in zip(pool.replicas, outcomes, strict=True):
            if isinstance(outcome, _Unanswered):
                pool.mark_down(replica)
                unanswered.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome  # a real refusal (an unknown model, say) from any replica
        if not loaded:
            raise ModelError(
                f"no replica of {pool.prefix!r} answered LoadModel for {shown(model)}; "
                f"last: {unanswered[-1].error}",
                retryable=True,
            )
        return _model_info(model, loaded[0].model)

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded:
        request = model_pb2.EmbedRequest(model=model, texts=list(texts), normalize=True)
        response = await self._call(model, "Embed", request)
        if len(response.embeddings) != len(texts):
            count = len(response.embeddings)
            raise ModelError(
                f"model {shown(model)} returned {count} vectors for {len(texts)} texts"
            )
        vectors = [list(embedding.values) for embedding in response.embeddings]
        return Embedded(vectors=vectors, usage=_usage(response.usage))

    async def generate(self, model: str, prompt: str, *, max_new_tokens: int = 128) -> Generated:
        if max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        params = model_pb2.GenerationParams(max_new_tokens=max_new_tokens)
        request = model_pb2.GenerateRequest(model=model, prompt=prompt, params=params)
        response = await self._call(model, "Generate", request)
        return Generated(text=response.text, usage=_usage(response.usage))

    async def summarize(self, model: str, text: str) -> Generated:
        response = await self._call(
            model, "Summarize", model_pb2.SummarizeRequest(model=model, text=text)
        )
        return Generated(text=response.summary, usage=_usage(response.usage))

    async def rewrite(self, model: str, text: str, prompt: str) -> Generated:
        request = model_pb2.RewriteRequest(model=model, text=text, instruction=prompt)
        response = await self._call(model, "Rewrite", request)
        return Generated(text=response.text, usage=_usage(response.usage))

    async def translate(self, model: str, text: str, source: str, target: str) -> Generated:
        request = model_pb2.TranslateRequest(
            model=model, text=text, source_language=source, target_language=target
        )
        response = await self._call(model, "Translate", request)
        return Generated(text=response.text, usage=_usage(response.usage))

    async def answer_question(self, model: str, question: str, context: str) -> Generated:
        request = model_pb2.AnswerQuestionRequest(model=model, question=question, context=context)
        response = await self._call(model, "AnswerQuestion", request)
        return Generated(text=response.answer, usage=_usage(response.usage))

    # -- calls -----------------------------------------------------------------------------
    async def _call(self, model: str, method: str, request: Any) -> Any:
        """Call ``method`` on the best replica, failing over while replicas do not answer."""
        pool = self.pool(model)
        last: ModelError | None = None
        for replica in pool.order():
            try:
                response = await self._on(replica, model, method, request)
            except _Unanswered as exc:
                pool.mark_down(replica)
                last = exc.error
                continue
            pool.mark_up(replica)
            return response
        assert last is not None  # a pool has at least one replica
        raise ModelError(
            f"no replica of {pool.prefix!r} answered ({len(pool.replicas)} tried); last: {last}",
            retryable=True,
            retry_after=last.retry_after,
        ) from last

    async def _on(self, replica: Replica, model: str, method: str, request: Any) -> Any:
        scope = current_scope.get()
        timeout = self.call_timeout
        metadata: list[tuple[str, str]] = []
        if scope is not None:
            remaining = scope.remaining()
            if remaining is not None:
                timeout = min(timeout, remaining)
            metadata += [
                ("x-graphmesh-run-id", header_value(scope.run_id)),
                ("x-graphmesh-task-id", header_value(scope.task_id)),
            ]
            if scope.tenant:
                metadata.append(("x-graphmesh-tenant", header_value(scope.tenant)))
        replica.outstanding += 1
        try:
            return await getattr(replica.stub, method)(request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            error = model_error(exc, model=model, target=replica.target)
            if exc.code() in FAILOVER:
                raise _Unanswered(error) from exc
            raise error from None
        finally:
            replica.outstanding -= 1


def header_value(text: str) -> str:
    """``text`` as a metadata value gRPC accepts: printable ASCII (anything else, a task id
    in any script or with a newline, percent-encoded as UTF-8), at most ``MAX_HEADER`` long."""
    return quote(text, safe=_HEADER_SAFE)[:MAX_HEADER]


class _Unanswered(Exception):
    """The replica did not answer (gone, refusing, shutting down): try another."""

    def __init__(self, error: ModelError) -> None:
        super().__init__(str(error))
        self.error = error


def _usage(usage: model_pb2.Usage) -> Usage:
    return Usage(input_tokens=max(0, usage.input_tokens), output_tokens=max(0, usage.output_tokens))


def _model_info(requested: str, info: model_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=requested,  # the routed name, so later tasks reach the same pool
        provider=info.provider or requested.split(":", 1)[0],
        task_kinds=tuple(_TASK_KINDS[k] for k in info.task_kinds if k in _TASK_KINDS),
        dimensions=info.dimensions or None,
        context_window=info.context_window or None,
        params={"loaded": info.loaded, "canonical_name": info.name},
    )
