"""``graphmesh.v1.ModelService`` over a :class:`Gateway`: provider models answer the same RPCs
as a model server's local ones, so the orchestrator routes ``openai:``/``anthropic:`` names
here and treats the answers alike.

Each call runs within the caller's gRPC deadline (none: the configured default). Every
answer fills the proto ``Usage`` with the provider's token counts, and puts the estimated
cost from the price table in the trailing metadata ``x-graphmesh-cost-usd`` (the proto has
no field for it). Errors map through one table (:data:`STATUS_CODES`); a refusal to call now
(a provider's 429 or quota pause, or the shared limits) is ``RESOURCE_EXHAUSTED`` with the
wait as ``google.rpc.RetryInfo`` in the rich status details *and* as ``retry-after-ms`` in
the trailing metadata, so the caller's queue reschedules the job instead of holding a
worker. Messages keep the provider's own text and request id (cleaned of keys by the
adapters), never anything else from inside.

``LoadModel``/``UnloadModel`` answer from the configuration: a configured model is always
"loaded" (a provider model needs no loading), any other name is ``NOT_FOUND``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.rpc import error_details_pb2

from graphmesh.services.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    LimiterUnavailable,
    ModelNotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    clean_message,
)
from graphmesh.services.gateway.gateway import Gateway
from graphmesh.services.gateway.metrics import GatewayMetrics
from graphmesh.services.gateway.types import ChatRequest, Usage
from graphmesh.services.kit import model_wire as wire
from graphmesh.v1 import model_pb2, model_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = "graphmesh.v1.ModelService"
RETRY_AFTER_MS = wire.RETRY_AFTER_MS
COST_USD = "x-graphmesh-cost-usd"
ERROR_DOMAIN = "gateway.graphmesh.dev"
DEFAULT_MAX_TOKENS = 512

# The first row whose class the error is an instance of gives its code.
STATUS_CODES: tuple[tuple[type[GatewayError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ProviderUnavailable, grpc.StatusCode.UNAVAILABLE),
    (LimiterUnavailable, grpc.StatusCode.UNAVAILABLE),
)

_FINISH_REASONS = {
    "stop": model_pb2.FINISH_REASON_STOP,
    "end_turn": model_pb2.FINISH_REASON_STOP,
    "stop_sequence": model_pb2.FINISH_REASON_STOP,
    "length": model_pb2.FINISH_REASON_LENGTH,
    "max_tokens": model_pb2.FINISH_REASON_LENGTH,
    "content_filter": model_pb2.FINISH_REASON_CONTENT_FILTER,
    "refusal": model_pb2.FINISH_REASON_CONTENT_FILTER,
}
_CHAT_KINDS = (
    model_pb2.MODEL_TASK_KIND_GENERATE,
    model_pb2.MODEL_TASK_KIND_SUMMARIZE,
    model_pb2.MODEL_TASK_KIND_REWRITE,
    model_pb2.MODEL_TASK_KIND_TRANSLATE,
    model_pb2.MODEL_TASK_KIND_ANSWER_QUESTION,
)


def status_code(error: GatewayError) -> grpc.StatusCode:
    """The gRPC code of a gateway error."""
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def error_status(error: GatewayError) -> grpc.Status:
    """The rich status of ``error``: code, message, ``ErrorInfo`` (with the provider and its
    request id) and, for a refusal, ``RetryInfo``; plus ``retry-after-ms`` for those
    callers that read only metadata."""
    metadata: dict[str, str] = {}
    if error.provider:
        metadata["provider"] = error.provider
    if error.request_id:
        metadata["request_id"] = clean_message(error.request_id)
    reason = type(error).__name__.upper()
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    ]
    trailing: list[tuple[str, str]] = []
    if isinstance(error, RateLimited):
        retry, trailer = wire.retry_info(error.retry_after)
        details.append(retry)
        trailing.append(trailer)
    return wire.build_status(status_code(error), clean_message(str(error)), details, trailing)


def internal_status(reference: str) -> grpc.Status:
    return wire.build_status(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


class _Call:
    """One RPC being answered: its deadline, and the usage it reports."""

    def __init__(self, gateway: Gateway, model: str, context: grpc.aio.ServicerContext[Any, Any]):
        self.model = model
        self._gateway = gateway
        self.usage = Usage()
        self.cost: float | None = None
        remaining = context.time_remaining()
        # No deadline (None, or grpc's "forever"): the gateway's default applies.
        self.time_limit = remaining if remaining is not None and remaining < 1e9 else None
        if self.time_limit is not None and self.time_limit <= 0:
            raise DeadlineExceeded("the caller's deadline has passed")

    def used(self, usage: Usage) -> model_pb2.Usage:
        """Note ``usage`` (the call's whole usage) and give it as the proto's."""
        self.usage = usage
        self.cost = self._gateway.cost(self.model, usage)
        return model_pb2.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


class GatewayServicer(model_pb2_grpc.ModelServiceServicer):
    """ModelService for the routed models of ``gateway``."""

    def __init__(self, gateway: Gateway, metrics: GatewayMetrics | None = None) -> None:
        self._gateway = gateway
        self._models = gateway.models()
        self._metrics = metrics or GatewayMetrics(
            {model: gateway.provider(model) for model in self._models}
        )

    def add_to(self, server: grpc.aio.Server) -> None:
        model_pb2_grpc.add_ModelServiceServicer_to_server(self, server)

    @asynccontextmanager
    async def _answering(
        self, method: str, model: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[_Call]:
        """Run the block as the answer of ``method`` on ``model``: errors become statuses,
        the usage and cost are recorded, and the cost goes out as trailing metadata."""
        try:
            if not model:
                raise InvalidRequest("model must name a routed model, e.g. 'openai:gpt-4o-mini'")
            call = _Call(self._gateway, model, context)
            yield call
        except GatewayError as error:
            status = error_status(error)
            self._metrics.answered(model, method, status.code.name)
            logger.info("%s %s: %s %s", method, model, status.code.name, status.details)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            reference = uuid.uuid4().hex[:12]
            logger.error("%s %s failed, reference %s", method, model, reference, exc_info=error)
            self._metrics.answered(model, method, grpc.StatusCode.INTERNAL.name)
            status = internal_status(reference)
            await context.abort(status.code, status.details, status.trailing_metadata)
        else:
            self._metrics.answered(model, method, grpc.StatusCode.OK.name)
            self._metrics.used(model, call.usage, call.cost)
            if call.cost is not None:
                context.set_trailing_metadata(((COST_USD, f"{call.cost:.10f}"),))

    async def Embed(
        self, request: model_pb2.EmbedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.EmbedResponse:
        async with self._answering("Embed", request.model, context) as call:
            embeddings = await self._gateway.embed(
                request.model, list(request.texts), time_limit=call.time_limit
            )
            vectors = [_normalized(v) if request.normalize else v for v in embeddings.vectors]
            return model_pb2.EmbedResponse(
                embeddings=[model_pb2.Embedding(values=vector) for vector in vectors],
                model=request.model,
                dimensions=len(vectors[0]) if vectors else 0,
                usage=call.used(embeddings.usage),
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def Generate(
        self, request: model_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.GenerateResponse:
        async with self._answering("Generate", request.model, context) as call:
            chat = chat_request(request.prompt, _params(request))
            completion = await self._gateway.generate(
                request.model, chat, time_limit=call.time_limit
            )
            return model_pb2.GenerateResponse(
                text=completion.text,
                finish_reason=finish_reason(completion.finish_reason),
                usage=call.used(completion.usage),
                model=request.model,
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def GenerateStream(
        self,
        request: model_pb2.GenerateStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[model_pb2.GenerateStreamResponse]:
        async with self._answering("GenerateStream", request.model, context) as call:
            chat = chat_request(request.prompt, _params(request))
            async with self._gateway.stream(
                request.model, chat, time_limit=call.time_limit
            ) as chunks:
                async for chunk in chunks:
                    answer = model_pb2.GenerateStreamResponse(text_delta=chunk.text)
                    if chunk.finish_reason is not None:
                        answer.finish_reason = finish_reason(chunk.finish_reason)
                    if chunk.usage is not None:
                        answer.usage.CopyFrom(call.used(chunk.usage))
                    yield answer

    async def Summarize(
        self, request: model_pb2.SummarizeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.SummarizeResponse:
        async with self._answering("Summarize", request.model, context) as call:
            params = _params(request)
            completion = await self._gateway.summarize(
                request.model,
                request.text,
                max_tokens=_max_tokens(params, 256),
                time_limit=call.time_limit,
            )
            return model_pb2.SummarizeResponse(
                summary=completion.text, usage=call.used(completion.usage)
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def Rewrite(
        self, request: model_pb2.RewriteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.RewriteResponse:
        async with self._answering("Rewrite", request.model, context) as call:
            if not request.instruction.strip():
                raise InvalidRequest("instruction must not be empty")
            completion = await self._gateway.rewrite(
                request.model,
                request.text,
                request.instruction,
                max_tokens=_max_tokens(_params(request), 512),
                time_limit=call.time_limit,
            )
            return model_pb2.RewriteResponse(
                text=completion.text, usage=call.used(completion.usage)
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def Translate(
        self, request: model_pb2.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.TranslateResponse:
        async with self._answering("Translate", request.model, context) as call:
            if not request.target_language.strip():
                raise InvalidRequest("target_language must not be empty")
            completion = await self._gateway.translate(
                request.model,
                request.text,
                source=request.source_language,
                target=request.target_language,
                max_tokens=_max_tokens(_params(request), 512),
                time_limit=call.time_limit,
            )
            return model_pb2.TranslateResponse(
                text=completion.text, usage=call.used(completion.usage)
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def AnswerQuestion(
        self,
        request: model_pb2.AnswerQuestionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> model_pb2.AnswerQuestionResponse:
        async with self._answering("AnswerQuestion", request.model, context) as call:
            if not request.question.strip():
                raise InvalidRequest("question must not be empty")
            completion = await self._gateway.answer_question(
                request.model,
                request.question,
                request.context,
                max_tokens=_max_tokens(_params(request), 256),
                time_limit=call.time_limit,
            )
            return model_pb2.AnswerQuestionResponse(
                answer=completion.text, usage=call.used(completion.usage)
            )
        raise AssertionError("unreachable: _answering aborts on every error")

    async def ListModels(
        self, request: model_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.ListModelsResponse:
        return model_pb2.ListModelsResponse(models=[self._info(name) for name in self._models])

    async def LoadModel(
        self, request: model_pb2.LoadModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.LoadModelResponse:
        async with self._answering("LoadModel", request.model, context):
            self._known(request.model)
            return model_pb2.LoadModelResponse(model=self._info(request.model))
        raise AssertionError("unreachable: _answering aborts on every error")

    async def UnloadModel(
        self, request: model_pb2.UnloadModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.UnloadModelResponse:
        async with self._answering("UnloadModel", request.model, context):
            self._known(request.model)
            # A provider model stays available: there is nothing to unload.
            return model_pb2.UnloadModelResponse(was_loaded=False)
        raise AssertionError("unreachable: _answering aborts on every error")

    def _known(self, model: str) -> None:
        if model not in self._models:
            raise ModelNotFound(f"no gateway route for model {model!r}")

    def _info(self, name: str) -> model_pb2.ModelInfo:
        provider = self._gateway.provider(name)
        kinds = [*_CHAT_KINDS]
        if provider == "openai":
            kinds.insert(0, model_pb2.MODEL_TASK_KIND_EMBED)
        return model_pb2.ModelInfo(name=name, provider=provider, task_kinds=kinds, loaded=True)


def chat_request(prompt: str, params: model_pb2.GenerationParams | None) -> ChatRequest:
    """The chat request of a prompt and its generation parameters; a parameter out of range
    is an :class:`InvalidRequest` naming it."""
    if not prompt:
        raise InvalidRequest("prompt must not be empty")
    if params is None:
        return ChatRequest.prompt(prompt, max_tokens=DEFAULT_MAX_TOKENS)
    temperature: float | None = None
    if params.HasField("temperature"):
        temperature = params.temperature
        if not (math.isfinite(temperature) and temperature >= 0):
            raise InvalidRequest("params.temperature must be a finite number >= 0")
    if params.HasField("top_p") and not 0 < params.top_p <= 1:
        raise InvalidRequest("params.top_p must be in (0, 1]")
    request = ChatRequest.prompt(
        prompt, system=params.system_prompt, max_tokens=_max_tokens(params, DEFAULT_MAX_TOKENS)
    )
    return ChatRequest(
        messages=request.messages,
        system=request.system,
        max_tokens=request.max_tokens,
        temperature=temperature,
        stop=tuple(params.stop),
    )


def finish_reason(reason: str) -> model_pb2.FinishReason.ValueType:
    """The proto's finish reason for a provider's."""
    return _FINISH_REASONS.get(reason, model_pb2.FINISH_REASON_UNSPECIFIED)


def _params(request: Any) -> model_pb2.GenerationParams | None:
    return request.params if request.HasField("params") else None


def _max_tokens(params: model_pb2.GenerationParams | None, default: int) -> int:
    if params is None or not params.HasField("max_new_tokens"):
        return default
    if params.max_new_tokens < 1:
        raise InvalidRequest("params.max_new_tokens must be at least 1")
    return params.max_new_tokens


def _normalized(vector: Sequence[float]) -> Sequence[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm > 0 else vector
