"""Sentence embeddings and chat generation with transformers on torch, fully offline.

Embeddings: an encoder (``AutoModel``), mean pooling over the attention mask, L2-normalised,
as sentence-transformers does for MiniLM. Chat: a causal LM through its own chat template,
greedy decoding, batched with left padding so every row's continuation starts at the
same column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from graphmesh.model_server.backends import gguf_cache
from graphmesh.model_server.backends.base import (
    Cancelled,
    ChatMessage,
    Completion,
    Conversation,
    Embedded,
    FinishReason,
    LoadOptions,
    Sampling,
    TextSink,
    Usage,
)
from graphmesh.model_server.backends.errors import ModelLoadError

EMBED_BATCH_SIZE = 64
DEFAULT_MAX_INPUT_TOKENS = 512
# Tokens kept from the end of an over-long prompt: the question and the assistant header
# live there, and the model must see them to answer at all.
PROMPT_TAIL_TOKENS = 256


def _load_error(path: Path, exc: Exception) -> ModelLoadError:
    return ModelLoadError(f"cannot load model from {path}: {type(exc).__name__}: {exc}")


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first GPU when torch sees one, else the CPU; a GPU asked for but
    missing is a load error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on a GPU and float32 on the CPU (where half precision is slow)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype)
    assert isinstance(resolved, torch.dtype)
    return resolved


def _place(model: PreTrainedModel, options: LoadOptions) -> PreTrainedModel:
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    # transformers' typing of Module.to is broken (a decorated method); torch's is right.
    placed: PreTrainedModel = torch.nn.Module.to(model, device=device, dtype=dtype)
    return placed


class TransformersEmbeddingBackend:
    """A sentence-embedding encoder with mean pooling; ``embed`` is thread-compatible."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_input_tokens: int,
        batch_size: int = EMBED_BATCH_SIZE,
    ) -> None:
        self._model = _inference_mode(model)
        self._tokenizer = tokenizer
        self._max_input_tokens = max_input_tokens
        self._batch_size = batch_size

    @classmethod
    def from_directory(
        cls, path: Path, options: LoadOptions | None = None
    ) -> TransformersEmbeddingBackend:
        """Load an encoder and its tokenizer from local files only, placed per ``options``."""
        options = options or LoadOptions(warm_up=False)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(path, exc) from exc
        backend = cls(
            _place(model, options), tokenizer, max_input_tokens=_max_input_tokens(path, tokenizer)
        )
        if options.warm_up:
            backend.embed(["warm-up"])
        return backend

    @property
    def device(self) -> str:
        """Where the weights live, e.g. ``cpu`` or ``cuda:0``."""
        return str(self._model.device)

    @property
    def dimensions(self) -> int:
        """Width of the encoder's hidden state, which pooling preserves."""
        return int(self._model.config.hidden_size)

    @property
    def max_input_tokens(self) -> int:
        """Inputs are truncated to this many tokens."""
        return self._max_input_tokens

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in input order."""
        return [embedded.vector for embedded in self.embed_counted(texts)]

    def embed_counted(self, texts: Sequence[str], *, normalize: bool = True) -> list[Embedded]:
        """Vectors with the tokens each text took (after truncation), in input order."""
        # Texts of similar length share a padded batch, so short ones are not padded to long.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Embedded | None] = [None] * len(texts)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            embedded = self._embed_batch([texts[i] for i in chunk], normalize)
            for index, result in zip(chunk, embedded, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _embed_batch(self, texts: list[str], normalize: bool) -> list[Embedded]:
        encoded = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_input_tokens,
            return_tensors="pt",
        ).to(self._model.device)
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"]
        pooled = _mean_pool(hidden, mask).float()
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        vectors: list[list[float]] = pooled.cpu().tolist()
        counts: list[int] = mask.sum(dim=1).cpu().tolist()
        return [
            Embedded(vector=vector, usage=Usage(input_tokens=count))
            for vector, count in zip(vectors, counts, strict=True)
        ]


def _inference_mode(model: PreTrainedModel) -> PreTrainedModel:
    # Dropout off. from_pretrained already does this, but a backend may be handed any model.
    model.train(False)
    return model


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _max_input_tokens(path: Path, tokenizer: PreTrainedTokenizerBase) -> int:
    # sentence-transformers models state the length they were trained on; BERT's 512 is the
    # architectural ceiling, not what the pooled embeddings were tuned for.
    config = path / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8"))["max_seq_length"])
    limit = int(tokenizer.model_max_length)
    return limit if 0 < limit <= 1_000_000 else DEFAULT_MAX_INPUT_TOKENS


class TransformersChatBackend:
    """A causal LM answering through its chat template; greedy unless sampling is asked for."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        if not tokenizer.chat_template:
            raise ModelLoadError("the tokenizer has no chat template; it is not a chat model")
        if not isinstance(model, GenerationMixin):
            raise ModelLoadError(f"{type(model).__name__} cannot generate text")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model = _inference_mode(model)
        self._generate = model.generate
        self._tokenizer = tokenizer
        self.loaded_from: Path | None = None

    @classmethod
    def from_directory(
        cls, path: Path, *, gguf_file: str | None = None, options: LoadOptions | None = None
    ) -> TransformersChatBackend:
        """Load a chat model from a transformers directory, or a GGUF file inside it.

        A GGUF model is de-quantized once and kept in the model cache (:mod:`.gguf_cache`),
        so later loads read the cached safetensors instead of de-quantizing again."""
        options = options or LoadOptions(warm_up=False)
        directory = path
        if gguf_file:
            directory = gguf_cache.cached(path / gguf_file, lambda: _load_gguf(path, gguf_file))
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            if not gguf_file:
                raise _load_error(path, exc) from exc
            # A damaged cache entry: throw it away and de-quantize again.
            gguf_cache.discard(directory)
            directory = gguf_cache.cached(path / gguf_file, lambda: _load_gguf(path, gguf_file))
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
        backend = cls(_place(model, options), tokenizer)
        backend.loaded_from = directory
        if options.warm_up:
            backend.complete([[_WARM_UP]], Sampling(max_new_tokens=1))
        return backend

    @property
    def device(self) -> str:
        """Where the weights live, e.g. ``cpu`` or ``cuda:0``."""
        return str(self._model.device)

    @property
    def context_window(self) -> int:
        """Prompt plus completion tokens the model can attend to."""
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """Greedy replies, one per conversation, generated as one padded batch."""
        sampling = Sampling(max_new_tokens=max_new_tokens)
        return [completion.text for completion in self.complete(conversations, sampling)]

    def complete(
        self, conversations: Sequence[Conversation], sampling: Sampling
    ) -> list[Completion]:
        """Replies generated as one left-padded batch, with finish reasons and token counts."""
        if not conversations:
            return []
        prompts = [self._fitted_prompt(c, sampling.max_new_tokens) for c in conversations]
        input_ids, attention_mask = _left_pad(prompts, self._pad_id)
        device = self._model.device
        with torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self._generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=self._generation_config(sampling),
                **self._stop_kwargs(sampling),
            )
        rows: list[list[int]] = output[:, input_ids.shape[1] :].cpu().tolist()
        return [
            self._completion(row, len(prompt), sampling)
            for row, prompt in zip(rows, prompts, strict=True)
        ]

    def stream(
        self,
        conversation: Conversation,
        sampling: Sampling,
        on_text: TextSink,
        cancelled: Cancelled,
    ) -> Completion:
        """Generate one reply, handing ``on_text`` each decoded piece as soon as it exists."""
        prompt = self._fitted_prompt(conversation, sampling.max_new_tokens)
        streamer = _TextStreamer(self._tokenizer, on_text, sampling.stop, self._end_ids)
        device = self._model.device
        until = _Until(lambda: cancelled() or streamer.stopped)
        with torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            self._generate(
                input_ids=torch.tensor([prompt], dtype=torch.long, device=device),
                attention_mask=torch.ones((1, len(prompt)), dtype=torch.long, device=device),
                generation_config=self._generation_config(sampling),
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([until]),
            )
        streamer.flush()
        if cancelled():
            reason = FinishReason.CANCELLED
        elif streamer.stopped or streamer.ended or len(streamer.ids) < sampling.max_new_tokens:
            reason = FinishReason.STOP
        else:
            reason = FinishReason.LENGTH
        usage = Usage(input_tokens=len(prompt), output_tokens=len(streamer.ids))
        return Completion(text=streamer.emitted, finish_reason=reason, usage=usage)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone, without special tokens."""
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def _pad_id(self) -> int:
        return int(self._tokenizer.pad_token_id)

    @property
    def _end_ids(self) -> frozenset[int]:
        eos = self._model.generation_config.eos_token_id or self._tokenizer.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return frozenset(int(i) for i in ids if i is not None)

    def _fitted_prompt(self, conversation: Conversation, max_new_tokens: int) -> list[int]:
        budget = max(self.context_window - max_new_tokens, 2 * PROMPT_TAIL_TOKENS)
        return _fit(self._prompt_ids(conversation), budget)

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        rendered = self._tokenizer.apply_chat_template(
            [message.as_dict() for message in conversation],
            tokenize=False,
            add_generation_prompt=True,
        )
        # The template already holds the special tokens; adding them again would double BOS.
        ids: list[int] = self._tokenizer(str(rendered), add_special_tokens=False)["input_ids"]
        return ids

    def _completion(self, row: list[int], prompt_tokens: int, sampling: Sampling) -> Completion:
        ends = self._end_ids | {self._pad_id}
        cut = next((i for i, token in enumerate(row) if token in ends), None)
        produced = row if cut is None else row[: cut + 1]
        kept = row[:cut] if cut is not None else row
        text = str(self._tokenizer.decode(kept, skip_special_tokens=True))
        text, stopped = _cut_at_stop(text, sampling.stop)
        if cut is not None or stopped or len(produced) < sampling.max_new_tokens:
            reason = FinishReason.STOP
        else:
            reason = FinishReason.LENGTH
        usage = Usage(input_tokens=prompt_tokens, output_tokens=len(produced))
        return Completion(text=text.strip(), finish_reason=reason, usage=usage)

    def _stop_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        if not sampling.stop:
            return {}
        return {"tokenizer": self._tokenizer}

    def _generation_config(self, sampling: Sampling) -> GenerationConfig:
        # A complete config of our own, rather than the model's defaults plus overrides, so a
        # checkpoint shipping sampling settings cannot make greedy decoding warn or sample.
        defaults = self._model.generation_config
        settings: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sampling.temperature > 0,
            "num_beams": 1,
            # Small models decoding greedily fall into loops ("Rewrite ... Rewrite ...");
            # a mild penalty keeps them out without changing short answers.
            "repetition_penalty": 1.2,
            "pad_token_id": self._pad_id,
            "eos_token_id": defaults.eos_token_id or self._tokenizer.eos_token_id,
            "bos_token_id": defaults.bos_token_id,
        }
        if sampling.temperature > 0:
            settings.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            settings["stop_strings"] = list(sampling.stop)
        return GenerationConfig.from_dict(settings)


_WARM_UP = ChatMessage(role="user", content="Hi")


def _load_gguf(path: Path, gguf_file: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, gguf_file=gguf_file
        )
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error(path / gguf_file, exc) from exc
    return model, tokenizer


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    found = [index for index in (text.find(s) for s in stop if s) if index >= 0]
    return (text[: min(found)], True) if found else (text, False)


class _Until(StoppingCriteria):
    """Stops every row once ``check()`` is true (a cancelled caller, a stop string)."""

    def __init__(self, check: Cancelled) -> None:
        self._check = check

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self._check(), dtype=torch.bool)
        return done.to(input_ids.device)  # type: ignore[return-value]


class _TextStreamer(BaseStreamer):
    """Decodes tokens as ``generate`` produces them and hands the new text on.

    Holds back a trailing partial character (an incomplete UTF-8 sequence decodes to U+FFFD)
    and as many characters as a stop string could still need, so no text past a stop string
    is ever sent."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        on_text: TextSink,
        stop: Sequence[str],
        end_ids: frozenset[int],
    ) -> None:
        self._tokenizer = tokenizer
        self._on_text = on_text
        self._stop = [s for s in stop if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._end_ids = end_ids
        self._prompt_seen = False
        self.ids: list[int] = []
        self.emitted = ""
        self.stopped = False
        self.ended = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate hands the prompt over first
            self._prompt_seen = True
            return
        if self.stopped or self.ended:
            return
        for token in value.flatten().tolist():
            self.ids.append(int(token))
            if int(token) in self._end_ids:
                self.ended = True
                break
        self._emit(final=False)

    def end(self) -> None:
        self.flush()

    def flush(self) -> None:
        self._emit(final=True)

    def _emit(self, *, final: bool) -> None:
        text = str(self._tokenizer.decode(self.ids, skip_special_tokens=True))
        text, found = _cut_at_stop(text, self._stop)
        if found:
            self.stopped = True
        elif not final:
            if text.endswith("\ufffd"):
                return
            text = text[: max(len(self.emitted), len(text) - self._hold)]
        delta = text[len(self.emitted) :]
        if delta and text.startswith(self.emitted):
            self.emitted = text
            self._on_text(delta)


def _fit(ids: list[int], budget: int) -> list[int]:
    """Drop the middle of an over-long prompt: the system prompt leads, the question ends it."""
    if len(ids) <= budget:
        return ids
    head = budget - PROMPT_TAIL_TOKENS
    return ids[:head] + ids[-PROMPT_TAIL_TOKENS:]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the left: generation appends on the right, so every row must end at one column."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[index, width - len(row) :] = 1
    return ids, mask
