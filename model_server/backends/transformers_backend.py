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
)

from graphmesh.model_server.backends.base import Conversation
from graphmesh.model_server.backends.errors import ModelLoadError

EMBED_BATCH_SIZE = 64
DEFAULT_MAX_INPUT_TOKENS = 512
# Tokens kept from the end of an over-long prompt: the question and the assistant header
# live there, and the model must see them to answer at all.
PROMPT_TAIL_TOKENS = 256


def _load_error(path: Path, exc: Exception) -> ModelLoadError:
    return ModelLoadError(f"cannot load model from {path}: {type(exc).__name__}: {exc}")


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
    def from_directory(cls, path: Path) -> TransformersEmbeddingBackend:
        """Load an encoder and its tokenizer from local files only."""
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(path, exc) from exc
        return cls(model, tokenizer, max_input_tokens=_max_input_tokens(path, tokenizer))

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
        # Texts of similar length share a padded batch, so short ones are not padded to long.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            embedded = self._embed_batch([texts[i] for i in chunk])
            for index, vector in zip(chunk, embedded, strict=True):
                vectors[index] = vector
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        encoded = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_input_tokens,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state
        pooled = _mean_pool(hidden, encoded["attention_mask"])
        vectors: list[list[float]] = torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
        return vectors


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
    """A causal LM answering through its chat template; greedy, so replies are repeatable."""

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

    @classmethod
    def from_directory(cls, path: Path, *, gguf_file: str | None = None) -> TransformersChatBackend:
        """Load a chat model from a transformers directory, or a GGUF file inside it."""
        extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **extra)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(path, exc) from exc
        return cls(model, tokenizer)

    @property
    def context_window(self) -> int:
        """Prompt plus completion tokens the model can attend to."""
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """Greedy replies, one per conversation, generated as one padded batch."""
        if not conversations:
            return []
        budget = max(self.context_window - max_new_tokens, 2 * PROMPT_TAIL_TOKENS)
        prompts = [_fit(self._prompt_ids(c), budget) for c in conversations]
        input_ids, attention_mask = _left_pad(prompts, self._pad_id)
        with torch.inference_mode():
            output = self._generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=self._generation_config(max_new_tokens),
            )
        completions = output[:, input_ids.shape[1] :]
        replies = self._tokenizer.batch_decode(completions, skip_special_tokens=True)
        return [reply.strip() for reply in replies]

    @property
    def _pad_id(self) -> int:
        return int(self._tokenizer.pad_token_id)

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        rendered = self._tokenizer.apply_chat_template(
            [message.as_dict() for message in conversation],
            tokenize=False,
            add_generation_prompt=True,
        )
        # The template already holds the special tokens; adding them again would double BOS.
        ids: list[int] = self._tokenizer(str(rendered), add_special_tokens=False)["input_ids"]
        return ids

    def _generation_config(self, max_new_tokens: int) -> GenerationConfig:
        # A complete config of our own, rather than the model's defaults plus overrides, so a
        # checkpoint shipping sampling settings cannot make greedy decoding warn or sample.
        defaults = self._model.generation_config
        return GenerationConfig.from_dict(
            {
                "max_new_tokens": max_new_tokens,
                "do_sample": False,
                "num_beams": 1,
                # Small models decoding greedily fall into loops ("Rewrite ... Rewrite ...");
                # a mild penalty keeps them out without changing short answers.
                "repetition_penalty": 1.2,
                "pad_token_id": self._pad_id,
                "eos_token_id": defaults.eos_token_id or self._tokenizer.eos_token_id,
                "bos_token_id": defaults.bos_token_id,
            }
        )


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
