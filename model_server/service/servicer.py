"""``graphmesh.v1.ModelService`` over a :class:`ModelHost`: checks, conversion, status codes.

Errors: a bad field → INVALID_ARGUMENT naming it; unknown model → NOT_FOUND; a model that
cannot do the task → FAILED_PRECONDITION; loading, not loaded, failed to load, shutting
down → UNAVAILABLE; a full queue → RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo`` and a
``retry-after-ms`` trailer; anything else INTERNAL with a reference logged beside the stack.
Every answer carries ``Usage`` counted by the model's own tokenizer.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from graphmesh.model_server import prompts
from graphmesh.model_server.backends.base import (
    ChatBackend,
    ChatMessage,
    Completion,
    EmbeddingBackend,
    ModelKind,
    Sampling,
    Usage,
)
from graphmesh.model_server.backends.errors import (
    ModelInputError,
    ModelKindError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnavailableError,
)
from graphmesh.model_server.batcher import BatcherClosedError, QueueFullError
from graphmesh.model_server.registry import LoadedModel
from graphmesh.model_server.service import metrics
from graphmesh.model_server.service.host import ModelHost, ModelNotReadyError
from graphmesh.services.kit import model_wire as wire
from graphmesh.v1 import model_pb2, model_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = "graphmesh.v1.ModelService"
SERVED_PREFIXES = ("hf:", "triton:")  # openai:/anthropic: belong to the gateways
PROVIDER = "transformers"
CHAT_TASKS = (
    model_pb2.MODEL_TASK_KIND_GENERATE,
    model_pb2.MODEL_TASK_KIND_SUMMARIZE,
    model_pb2.MODEL_TASK_KIND_REWRITE,
    model_pb2.MODEL_TASK_KIND_TRANSLATE,
    model_pb2.MODEL_TASK_KIND_ANSWER_QUESTION,
)
Context = grpc.aio.ServicerContext[Any, Any]


def status_for(exc: Exception) -> grpc.Status:
    """The status the contract promises for ``exc``."""
    code: grpc.StatusCode
    if isinstance(exc, wire.InvalidField):
        return wire.invalid_argument(exc)
    if isinstance(exc, ModelInputError):
        return wire.invalid_argument(wire.InvalidField(exc.field, exc.description))
    if isinstance(exc, QueueFullError):
        return wire.resource_exhausted(str(exc), exc.retry_after)
    if isinstance(exc, ModelNotFoundError):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, ModelKindError):
        code = grpc.StatusCode.FAILED_PRECONDITION
    elif isinstance(exc, ModelNotReadyError | ModelUnavailableError | ModelLoadError):
        code = grpc.StatusCode.UNAVAILABLE
    elif isinstance(exc, BatcherClosedError):
        return wire.build_status(grpc.StatusCode.UNAVAILABLE, "the model server is shutting down")
    else:
        reference = uuid.uuid4().hex[:12]
        logger.error("unexpected error, reference %s", reference, exc_info=exc)
        return wire.build_status(
            grpc.StatusCode.INTERNAL, f"internal error (reference {reference})"
        )
    return wire.build_status(code, str(exc))


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    """Serves the host's models."""

    def __init__(self, host: ModelHost) -> None:
        self._host = host
        self._limits = host.config.limits.wire()
        self._default_max_new_tokens = host.config.default_max_new_tokens

    # -- embeddings -----------------------------------------------------------------------
    async def Embed(
        self, request: model_pb2.EmbedRequest, context: Context
    ) -> model_pb2.EmbedResponse:
        async with self._call(context, request.model):
            call = wire.embed_call(request, self._limits)
            results = await self._host.embed(call.model, call.texts, normalize=call.normalize)
            return model_pb2.EmbedResponse(
                embeddings=[model_pb2.Embedding(values=r.vector) for r in results],
                model=call.model,
                dimensions=len(results[0].vector),
                usage=_usage([r.usage for r in results]),
            )
        raise AssertionError("unreachable")  # _call aborts on every error

    # -- generation -----------------------------------------------------------------------
    async def Generate(
        self, request: model_pb2.GenerateRequest, context: Context
    ) -> model_pb2.GenerateResponse:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            prompt = self._text(request.prompt, "prompt")
            reply = await self._complete(model, system, prompts.generate(prompt), sampling)
            return model_pb2.GenerateResponse(
                text=reply.text,
                finish_reason=wire.finish_reason_message(reply.finish_reason.value),
                usage=_usage([reply.usage]),
                model=model,
            )
        raise AssertionError("unreachable")

    async def GenerateStream(
        self, request: model_pb2.GenerateStreamRequest, context: Context
    ) -> AsyncIterator[model_pb2.GenerateStreamResponse]:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            prompt = self._text(request.prompt, "prompt")
            messages = _with_system(system, prompts.generate(prompt))
            pieces = self._host.stream(model, messages, sampling)
            async with contextlib.aclosing(pieces):
                async for piece in pieces:
                    if isinstance(piece, Completion):
                        yield model_pb2.GenerateStreamResponse(
                            finish_reason=wire.finish_reason_message(piece.finish_reason.value),
                            usage=_usage([piece.usage]),
                        )
                    else:
                        yield model_pb2.GenerateStreamResponse(text_delta=piece)

    async def Summarize(
        self, request: model_pb2.SummarizeRequest, context: Context
    ) -> model_pb2.SummarizeResponse:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            text = self._text(request.text, "text")
            reply = await self._complete(model, system, prompts.summarize(text), sampling)
            return model_pb2.SummarizeResponse(summary=reply.text, usage=_usage([reply.usage]))
        raise AssertionError("unreachable")

    async def Rewrite(
        self, request: model_pb2.RewriteRequest, context: Context
    ) -> model_pb2.RewriteResponse:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            text = self._text(request.text, "text")
            instruction = self._text(request.instruction, "instruction")
            reply = await self._complete(
                model, system, prompts.rewrite(text, instruction), sampling
            )
            return model_pb2.RewriteResponse(text=reply.text, usage=_usage([reply.usage]))
        raise AssertionError("unreachable")

    async def Translate(
        self, request: model_pb2.TranslateRequest, context: Context
    ) -> model_pb2.TranslateResponse:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            text = self._text(request.text, "text")
            target = wire.check_text(request.target_language, "target_language", limit=64)
            source = wire.check_text(
                request.source_language, "source_language", limit=64, required=False
            )
            conversation = prompts.translate(text, source or "the detected language", target)
            reply = await self._complete(model, system, conversation, sampling)
            return model_pb2.TranslateResponse(text=reply.text, usage=_usage([reply.usage]))
        raise AssertionError("unreachable")

    async def AnswerQuestion(
        self, request: model_pb2.AnswerQuestionRequest, context: Context
    ) -> model_pb2.AnswerQuestionResponse:
        async with self._call(context, request.model):
            model, sampling, system = self._chat_call(request.model, request.params)
            question = self._text(request.question, "question")
            passage = self._text(request.context, "context")
            conversation = prompts.answer_question(question, passage)
            reply = await self._complete(model, system, conversation, sampling)
            return model_pb2.AnswerQuestionResponse(answer=reply.text, usage=_usage([reply.usage]))
        raise AssertionError("unreachable")

    # -- model management -----------------------------------------------------------------
    async def LoadModel(
        self, request: model_pb2.LoadModelRequest, context: Context
    ) -> model_pb2.LoadModelResponse:
        async with self._call(context, request.model, count=False):
            model = wire.check_model(request.model, self._limits)
            self._check_routable(model)
            loaded = await self._host.load(model)
            return model_pb2.LoadModelResponse(model=model_info(model, loaded))
        raise AssertionError("unreachable")

    async def UnloadModel(
        self, request: model_pb2.UnloadModelRequest, context: Context
    ) -> model_pb2.UnloadModelResponse:
        async with self._call(context, request.model, count=False):
            model = wire.check_model(request.model, self._limits)
            self._check_routable(model)
            was_loaded = await self._host.unload(model)
            return model_pb2.UnloadModelResponse(was_loaded=was_loaded)
        raise AssertionError("unreachable")

    async def ListModels(
        self, request: model_pb2.ListModelsRequest, context: Context
    ) -> model_pb2.ListModelsResponse:
        async with self._call(context, "", count=False):
            infos = []
            for entry in self._host.registry.list():
                loaded = self._host.registry.loaded(entry.name) if entry.loaded else None
                if request.loaded_only and loaded is None:
                    continue
                if loaded is not None:
                    infos.append(model_info(entry.name, loaded))
                else:
                    infos.append(
                        model_pb2.ModelInfo(
                            name=entry.name, provider=PROVIDER, task_kinds=_tasks(entry.kind)
                        )
                    )
            infos.sort(key=lambda info: info.name)
            return model_pb2.ListModelsResponse(models=infos)
        raise AssertionError("unreachable")

    # -- helpers --------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _call(
        self, context: Context, model: str, *, count: bool = True
    ) -> AsyncIterator[None]:
        label = model[: self._limits.max_model_chars] if count and model else ""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if label and not isinstance(exc, ModelNotFoundError | wire.InvalidField):
                metrics.record_request(self._metric_name(label), ok=False)
            await wire.abort(context, status_for(exc))
        else:
            if label:
                metrics.record_request(self._metric_name(label), ok=True)

    def _metric_name(self, model: str) -> str:
        # Canonical names only, so a caller cannot grow label sets with made-up aliases.
        with contextlib.suppress(Exception):
            return self._host.registry.resolve(model).name
        return "unknown"

    def _check_routable(self, model: str) -> None:
        if not model.startswith(SERVED_PREFIXES):
            raise ModelNotFoundError(model, [entry.name for entry in self._host.registry.list()])

    def _text(self, value: str, field: str) -> str:
        return wire.check_text(value, field, limit=self._limits.max_prompt_chars)

    def _chat_call(
        self, model: str, params: model_pb2.GenerationParams
    ) -> tuple[str, Sampling, str]:
        model = wire.check_model(model, self._limits)
        settings = wire.generation_settings(params, self._limits)
        sampling = Sampling(
            max_new_tokens=settings.max_new_tokens or self._default_max_new_tokens,
            temperature=settings.temperature or 0.0,
            top_p=settings.top_p or 1.0,
            stop=settings.stop,
            seed=settings.seed,
        )
        return model, sampling, settings.system_prompt

    async def _complete(
        self,
        model: str,
        system: str,
        conversation: Sequence[ChatMessage],
        sampling: Sampling,
    ) -> Completion:
        self._check_routable(model)
        return await self._host.complete(model, _with_system(system, conversation), sampling)


def _with_system(system: str, conversation: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The conversation with the caller's system prompt in front (replacing the task's)."""
    rest = [message for message in conversation if message.role != "system" or not system]
    return [ChatMessage(role="system", content=system), *rest] if system else rest


def _usage(usages: Sequence[Usage]) -> model_pb2.Usage:
    total = sum(usages, Usage())
    return wire.usage_message(total.input_tokens, total.output_tokens)


def _tasks(kind: ModelKind) -> list[model_pb2.ModelTaskKind.ValueType]:
    return [model_pb2.MODEL_TASK_KIND_EMBED] if kind is ModelKind.EMBEDDING else list(CHAT_TASKS)


def model_info(name: str, loaded: LoadedModel) -> model_pb2.ModelInfo:
    """What the server knows of a loaded model."""
    backend = loaded.backend
    info = model_pb2.ModelInfo(
        name=name, provider=PROVIDER, task_kinds=_tasks(loaded.kind), loaded=True
    )
    if isinstance(backend, EmbeddingBackend):
        info.dimensions = backend.dimensions
        info.context_window = backend.max_input_tokens
    elif isinstance(backend, ChatBackend):
        info.context_window = backend.context_window
    return info
