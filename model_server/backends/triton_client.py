"""An async client of one Triton Inference Server (gRPC, KServe v2), in our own terms.

It wraps ``tritonclient.grpc.aio`` and is the one place where Triton's errors become the
model server's (:mod:`graphmesh.model_server.backends.errors`):

=====================================================  ======================================
Triton says                                            we raise
=====================================================  ======================================
NOT_FOUND, the name is not in the repository           ``ModelNotFoundError``
NOT_FOUND, in the repository but not loaded            ``ModelUnavailableError``
UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, other        ``ModelUnavailableError``
INVALID_ARGUMENT                                       ``ModelInputError`` (field ``inputs``)
=====================================================  ======================================

A model's metadata tells what it is (:class:`TritonSignature`): an **embedding** model takes
texts (one BYTES input) and returns one FP32 vector per text; a **text generation** model
takes texts and returns texts (BYTES), with an optional integer ``max_tokens`` input. Either
may also have integer outputs ``input_tokens`` and ``output_tokens``: per-row token counts,
which become the calls' usage (zero where a model gives none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from graphmesh.model_server.backends.base import ModelKind
from graphmesh.model_server.backends.errors import (
    ModelInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelServerError,
    ModelUnavailableError,
)

TRITON_PREFIX = "triton:"
# Triton's model names are repository directory names: no separators, no dot-dirs.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_INTEGER_TYPES = ("INT32", "INT64")
MAX_TOKENS_INPUT = "max_tokens"
MESSAGES_INPUT = "messages"
COUNT_OUTPUTS = ("input_tokens", "output_tokens")
DEFAULT_MAX_INPUT_TOKENS = 512
DEFAULT_CONTEXT_WINDOW = 2048


@dataclass(frozen=True, kw_only=True)
class TritonSignature:
    """What a loaded Triton model takes and gives, read from its metadata and config."""

    model: str
    kind: ModelKind
    text_input: str
    output: str
    # Rows per request the model accepts; 0 means the model has no batch dimension.
    max_batch_size: int
    dimensions: int = 0
    max_tokens_input: str | None = None
    max_tokens_type: str = "INT32"
    # Which of COUNT_OUTPUTS the model has.
    counts: tuple[str, ...] = ()
    parameters: Mapping[str, str] | None = None

    def parameter(self, key: str, default: int) -> int:
        """A positive integer from the model config's ``parameters`` (e.g. context_window)."""
        raw = (self.parameters or {}).get(key)
        try:
            value = int(raw) if raw is not None else default
        except ValueError:
            return default
        return value if value > 0 else default


def check_model_name(model: str) -> str:
    """``model`` if Triton could name a repository directory so; ModelInputError otherwise."""
    if not _MODEL_NAME.fullmatch(model) or ".." in model:
        raise ModelInputError(
            "model", f"{model[:80]!r} is not a Triton model name (letters, digits, '_', '.', '-')"
        )
    return model


class TritonClient:
    """One gRPC channel to one Triton server; use as ``async with TritonClient(url) as c``."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, load_timeout_s: float = 300.0):
        self.url = url
        self._timeout_s = timeout_s
        self._load_timeout_s = load_timeout_s
        self._client: triton_aio.InferenceServerClient | None = None

    async def __aenter__(self) -> Self:
        self._client = triton_aio.InferenceServerClient(self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def server_live(self) -> bool:
        """Whether the server answers and says it is live; False when unreachable."""
        try:
            return bool(await self._open().is_server_live(client_timeout=self._timeout_s))
        except InferenceServerException:
            return False

    async def model_ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready; False when unknown or unreachable."""
        try:
            ready = await self._open().is_model_ready(
                check_model_name(model), client_timeout=self._timeout_s
            )
        except InferenceServerException:
            return False
        return bool(ready)

    async def repository(self) -> dict[str, str]:
        """Every model in the server's repository, with its state (READY, UNAVAILABLE, ...)."""
        try:
            index = await self._open().get_model_repository_index(
                as_json=True, client_timeout=self._timeout_s
            )
        except InferenceServerException as exc:
            raise self._unavailable(exc) from exc
        return {m["name"]: m.get("state", "") for m in index.get("models", [])}

    async def load(self, model: str) -> None:
        """Load ``model`` from the repository (explicit model-control mode)."""
        await self._known(model)
        try:
            await self._open().load_model(model, client_timeout=self._load_timeout_s)
        except InferenceServerException as exc:
            raise await self._translate(exc, model) from exc

    async def unload(self, model: str) -> None:
        """Unload ``model`` (explicit model-control mode); an unloaded model stays known."""
        await self._known(model)
        try:
            await self._open().unload_model(model, client_timeout=self._load_timeout_s)
        except InferenceServerException as exc:
            raise await self._translate(exc, model) from exc

    async def signature(self, model: str) -> TritonSignature:
        """What the loaded ``model`` takes and gives; ModelLoadError if we cannot serve it."""
        check_model_name(model)
        try:
            metadata = await self._open().get_model_metadata(
                model, as_json=True, client_timeout=self._timeout_s
            )
            config = await self._open().get_model_config(
                model, as_json=True, client_timeout=self._timeout_s
            )
        except InferenceServerException as exc:
            raise await self._translate(exc, model) from exc
        return read_signature(model, metadata, config.get("config", {}))

    async def infer(
        self, signature: TritonSignature, texts: Sequence[str], *, max_tokens: int | None = None
    ) -> np.ndarray[Any, Any]:
        """The model's output for ``texts`` (one row each), in one request."""
        return (await self.infer_counted(signature, texts, max_tokens=max_tokens)).rows

    async def infer_counted(
        self, signature: TritonSignature, texts: Sequence[str], *, max_tokens: int | None = None
    ) -> TritonOutput:
        """The model's output rows for ``texts`` and the token counts it reports."""
        inputs = [_bytes_input(signature, texts)]
        if signature.max_tokens_input is not None and max_tokens is not None:
            inputs.append(_integer_input(signature, max_tokens, len(texts)))
        try:
            result = await self._open().infer(
                signature.model,
                inputs,
                outputs=[
                    InferRequestedOutput(name) for name in (signature.output, *signature.counts)
                ],
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as exc:
            raise await self._translate(exc, signature.model) from exc
        output: np.ndarray[Any, Any] | None = result.as_numpy(signature.output)
        if output is None or len(output) != len(texts):
            raise ModelUnavailableError(
                f"triton model {signature.model!r} gave no {signature.output!r} row per input"
            )
        counts = {name: _counts(result.as_numpy(name), len(texts)) for name in signature.counts}
        zeros = [0] * len(texts)
        return TritonOutput(
            rows=output,
            input_tokens=counts.get("input_tokens", zeros),
            output_tokens=counts.get("output_tokens", zeros),
        )

    def _open(self) -> triton_aio.InferenceServerClient:
        if self._client is None:
            raise RuntimeError("TritonClient is used outside 'async with'")
        return self._client

    async def _known(self, model: str) -> None:
        if check_model_name(model) not in await self.repository():
            raise await self._not_found(model)

    async def _translate(self, exc: InferenceServerException, model: str) -> ModelServerError:
        status = str(exc.status() or "")
        if status.endswith("NOT_FOUND"):
            try:
                repository = await self.repository()
            except ModelUnavailableError as down:
                return down
            if model in repository:
                return ModelUnavailableError(
                    f"triton model {model!r} is not loaded ({repository[model] or 'no state'})"
                )
            return await self._not_found(model, repository)
        if status.endswith("INVALID_ARGUMENT"):
            refused = f"triton model {model!r} refused them: {exc.message()}"
            return ModelInputError("inputs", refused)
        return self._unavailable(exc)

    async def _not_found(
        self, model: str, repository: Mapping[str, str] | None = None
    ) -> ModelNotFoundError:
        names = repository if repository is not None else await self.repository()
        return ModelNotFoundError(
            f"{TRITON_PREFIX}{model}", [f"{TRITON_PREFIX}{n}" for n in names], local_paths=False
        )

    def _unavailable(self, exc: InferenceServerException) -> ModelUnavailableError:
        return ModelUnavailableError(f"triton at {self.url}: {exc.message()}")


def read_signature(
    model: str, metadata: Mapping[str, Any], config: Mapping[str, Any]
) -> TritonSignature:
    """Which kind of model the metadata describes; ModelLoadError when it is neither."""
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    inputs = {i["name"]: i for i in metadata.get("inputs", [])}
    texts = [i for i in inputs.values() if i.get("datatype") == "BYTES"]
    counted = [
        o
        for o in metadata.get("outputs", [])
        if o.get("name") in COUNT_OUTPUTS and o.get("datatype") in _INTEGER_TYPES
    ]
    outputs = [o for o in metadata.get("outputs", []) if o not in counted]
    parameters = {
        key: str(value.get("string_value", ""))
        for key, value in (config.get("parameters") or {}).items()
        if isinstance(value, Mapping)
    }
    if len(texts) != 1 or len(outputs) != 1:
        raise _unsupported(model, "one BYTES (text) input and one output")
    text, output = texts[0], outputs[0]
    _check_text_shape(model, text, max_batch_size)
    common = {
        "model": model,
        "text_input": text["name"],
        "output": output["name"],
        "max_batch_size": max_batch_size,
        "counts": tuple(o["name"] for o in counted),
        "parameters": parameters,
    }
    if output.get("datatype") == "FP32":
        return TritonSignature(
            kind=ModelKind.EMBEDDING, dimensions=_vector_width(model, output), **common
        )
    if output.get("datatype") == "BYTES":
        budget = inputs.get(MAX_TOKENS_INPUT)
        if budget is not None and budget.get("datatype") not in _INTEGER_TYPES:
            raise _unsupported(model, f"an INT32 or INT64 {MAX_TOKENS_INPUT!r} input")
        return TritonSignature(
            kind=ModelKind.CHAT,
            max_tokens_input=None if budget is None else MAX_TOKENS_INPUT,
            max_tokens_type=str(budget["datatype"]) if budget else "INT32",
            **common,
        )
    raise _unsupported(model, "an FP32 (embedding) or BYTES (text) output")


@dataclass(frozen=True, kw_only=True)
class TritonOutput:
    """One inference: an output row per text, and per-text token counts (0 where unknown)."""

    rows: np.ndarray[Any, Any]
    input_tokens: list[int]
    output_tokens: list[int]


def _counts(values: np.ndarray[Any, Any] | None, rows: int) -> list[int]:
    if values is None or len(values) != rows:
        return [0] * rows
    return [max(int(v), 0) for v in np.asarray(values).reshape(rows, -1)[:, 0]]


def _check_text_shape(model: str, text: Mapping[str, Any], max_batch_size: int) -> None:
    shape = [int(d) for d in text.get("shape", [])]
    batched_ok = max_batch_size > 0 and shape == [-1, 1]
    unbatched_ok = max_batch_size == 0 and shape == [-1]
    if not (batched_ok or unbatched_ok):
        raise _unsupported(model, "texts as dims [1] with a batch dimension, or as dims [-1]")


def _vector_width(model: str, output: Mapping[str, Any]) -> int:
    shape = [int(d) for d in output.get("shape", [])]
    if len(shape) != 2 or shape[-1] <= 0:
        raise _unsupported(model, "one fixed-width FP32 vector per text")
    return shape[-1]


def _unsupported(model: str, wanted: str) -> ModelLoadError:
    return ModelLoadError(f"triton model {model!r} cannot be served: it must take {wanted}")


def _bytes_input(signature: TritonSignature, texts: Sequence[str]) -> InferInput:
    data = np.array([text.encode("utf-8") for text in texts], dtype=np.object_)
    if signature.max_batch_size > 0:
        data = data.reshape(len(texts), 1)
    tensor = InferInput(signature.text_input, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _integer_input(signature: TritonSignature, value: int, rows: int) -> InferInput:
    dtype = np.int64 if signature.max_tokens_type == "INT64" else np.int32
    # A batched model takes one budget per row; an unbatched one a single budget.
    data = np.full((rows, 1) if signature.max_batch_size > 0 else (1,), value, dtype=dtype)
    name = signature.max_tokens_input or MAX_TOKENS_INPUT
    tensor = InferInput(name, list(data.shape), signature.max_tokens_type)
    tensor.set_data_from_numpy(data)
    return tensor


def messages_json(messages: Sequence[Mapping[str, str]]) -> str:
    """A conversation as the JSON a ``messages`` input takes."""
    return json.dumps(list(messages), ensure_ascii=False)
