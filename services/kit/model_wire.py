"""``graphmesh.v1.ModelService`` on the wire: request checks and proto <-> Python values.

Pure functions every ModelService implementation shares (the model server, the cloud
gateways): they check a request against :class:`WireLimits` and raise :class:`InvalidField`
naming the offending field (``texts[3]``, ``params.temperature``), turn ``GenerationParams``
into :class:`GenerationSettings`, and build the statuses the contract promises:
INVALID_ARGUMENT with a ``google.rpc.BadRequest``, RESOURCE_EXHAUSTED with a
``google.rpc.RetryInfo`` and a ``retry-after-ms`` trailer. No model runtime is imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from graphmesh.v1 import model_pb2

RETRY_AFTER_MS = "retry-after-ms"
MAX_MESSAGE_CHARS = 1000
ROUTING_PREFIXES = ("hf:", "triton:", "openai:", "anthropic:")


class InvalidField(ValueError):
    """A request field holds a value the service refuses; ``field`` is its path."""

    def __init__(self, field: str, description: str) -> None:
        self.field = field
        self.description = description
        super().__init__(f"{field}: {description}")


@dataclass(frozen=True, kw_only=True)
class WireLimits:
    """What one request may ask for; beyond it the request is INVALID_ARGUMENT."""

    max_texts: int = 256
    max_text_chars: int = 32_768
    max_prompt_chars: int = 65_536
    max_new_tokens: int = 2048
    max_stop_strings: int = 8
    max_stop_chars: int = 64
    max_model_chars: int = 1024


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """``GenerationParams`` checked; ``None`` leaves the choice to the model/server."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    system_prompt: str = ""


@dataclass(frozen=True, kw_only=True)
class EmbedCall:
    """An ``EmbedRequest`` checked."""

    model: str
    texts: tuple[str, ...]
    normalize: bool


def check_model(model: str, limits: WireLimits, field: str = "model") -> str:
    """The routed model name, which must be set, bounded and carry a routing prefix."""
    if not model:
        raise InvalidField(field, "is required")
    if len(model) > limits.max_model_chars:
        raise InvalidField(field, f"is longer than {limits.max_model_chars} characters")
    if not model.startswith(ROUTING_PREFIXES):
        raise InvalidField(field, f"must start with one of {', '.join(ROUTING_PREFIXES)}")
    return model


def check_text(value: str, field: str, *, limit: int, required: bool = True) -> str:
    """A text field, required unless said otherwise, of at most ``limit`` characters."""
    if required and not value.strip():
        raise InvalidField(field, "is required and must not be blank")
    if len(value) > limit:
        raise InvalidField(field, f"is {len(value)} characters long; the limit is {limit}")
    return value


def embed_call(request: model_pb2.EmbedRequest, limits: WireLimits) -> EmbedCall:
    """Check an ``EmbedRequest``: a model, 1..max_texts texts, none empty or too long."""
    model = check_model(request.model, limits)
    count = len(request.texts)
    if count == 0:
        raise InvalidField("texts", "must hold at least one text")
    if count > limits.max_texts:
        raise InvalidField("texts", f"holds {count} texts; the limit is {limits.max_texts}")
    for index, text in enumerate(request.texts):
        check_text(text, f"texts[{index}]", limit=limits.max_text_chars)
    return EmbedCall(model=model, texts=tuple(request.texts), normalize=request.normalize)


def generation_settings(
    params: model_pb2.GenerationParams, limits: WireLimits, field: str = "params"
) -> GenerationSettings:
    """Check ``GenerationParams``: positive bounded lengths, finite sampling values."""
    max_new_tokens = None
    if params.HasField("max_new_tokens"):
        max_new_tokens = params.max_new_tokens
        if not 1 <= max_new_tokens <= limits.max_new_tokens:
            raise InvalidField(
                f"{field}.max_new_tokens", f"must be between 1 and {limits.max_new_tokens}"
            )
    temperature = None
    if params.HasField("temperature"):
        temperature = params.temperature
        if not math.isfinite(temperature) or not 0.0 <= temperature <= 2.0:
            raise InvalidField(f"{field}.temperature", "must be between 0 and 2")
    top_p = None
    if params.HasField("top_p"):
        top_p = params.top_p
        if not math.isfinite(top_p) or not 0.0 < top_p <= 1.0:
            raise InvalidField(f"{field}.top_p", "must be above 0 and at most 1")
    if len(params.stop) > limits.max_stop_strings:
        raise InvalidField(f"{field}.stop", f"holds more than {limits.max_stop_strings} strings")
    for index, stop in enumerate(params.stop):
        if not stop:
            raise InvalidField(f"{field}.stop[{index}]", "must not be empty")
        check_text(stop, f"{field}.stop[{index}]", limit=limits.max_stop_chars)
    check_text(
        params.system_prompt,
        f"{field}.system_prompt",
        limit=limits.max_prompt_chars,
        required=False,
    )
    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(params.stop),
        seed=params.seed if params.HasField("seed") else None,
        system_prompt=params.system_prompt,
    )


def usage_message(input_tokens: int, output_tokens: int) -> model_pb2.Usage:
    """The ``Usage`` message of a call."""
    return model_pb2.Usage(input_tokens=input_tokens, output_tokens=output_tokens)


_FINISH_REASONS = {
    "stop": model_pb2.FINISH_REASON_STOP,
    "length": model_pb2.FINISH_REASON_LENGTH,
    "content_filter": model_pb2.FINISH_REASON_CONTENT_FILTER,
}


def finish_reason_message(reason: str) -> model_pb2.FinishReason.ValueType:
    """``stop``/``length``/``content_filter`` as the proto enum; anything else unspecified."""
    return _FINISH_REASONS.get(reason, model_pb2.FINISH_REASON_UNSPECIFIED)


# -- statuses -----------------------------------------------------------------------------
def invalid_argument(error: InvalidField) -> grpc.Status:
    """INVALID_ARGUMENT naming the field, with a ``google.rpc.BadRequest`` detail."""
    violation = error_details_pb2.BadRequest.FieldViolation(
        field=_bounded(error.field), description=_bounded(error.description)
    )
    return build_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        str(error),
        [error_details_pb2.BadRequest(field_violations=[violation])],
    )


def resource_exhausted(message: str, retry_after: float) -> grpc.Status:
    """RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo`` and a ``retry-after-ms`` trailer."""
    detail, trailer = retry_info(retry_after)
    return build_status(grpc.StatusCode.RESOURCE_EXHAUSTED, message, [detail], [trailer])


def retry_info(retry_after: float) -> tuple[error_details_pb2.RetryInfo, tuple[str, str]]:
    """A retry delay as both forms a caller may read: the ``google.rpc.RetryInfo`` detail
    and the ``retry-after-ms`` trailer (rounded up, at least 1 ms)."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(math.ceil(max(retry_after, 0.0) * 1e9))
    trailer = (RETRY_AFTER_MS, str(max(math.ceil(retry_after * 1000), 1)))
    return error_details_pb2.RetryInfo(retry_delay=delay), trailer


def build_status(
    code: grpc.StatusCode,
    message: str,
    details: Sequence[Any] = (),
    trailing: Sequence[tuple[str, str]] = (),
) -> grpc.Status:
    """A status with rich details (``google.rpc.Status`` in the trailing metadata) and any
    ``trailing`` metadata besides."""
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    code_number: int = code.value[0]
    proto = status_pb2.Status(code=code_number, message=_bounded(message), details=packed)
    status = rpc_status.to_status(proto)
    if not trailing:
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, *trailing))


def retry_after_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> float | None:
    """The retry delay a RESOURCE_EXHAUSTED error carries (RetryInfo first, then the
    ``retry-after-ms`` trailer), in seconds; None when it carries none."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.ToNanoseconds()) / 1e9
    trailers: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for item in trailers or ():
        key, value = item[0], item[1]
        if key == RETRY_AFTER_MS:
            return int(value) / 1000
    return None


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    """End the call with ``status`` (raises, as ``context.abort`` does)."""
    await context.abort(status.code, status.details, status.trailing_metadata)


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, Any], ...]


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."
