"""Text model tasks. Each calls the runner's ModelClient by routed model name (``hf:...``,
``openai:...``), so the same graph runs against in-process models or the model mesh.

Outputs are plain JSON: vectors as lists of floats, text as strings.
"""

from __future__ import annotations

from typing import Any, Final

from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.task import (
    JobQueueLlmTask,
    Port,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
    array_task,
)

DEFAULT_EMBEDDING_MODEL: Final = "hf:all-MiniLM-L6-v2"
DEFAULT_CHAT_MODEL: Final = "hf:SmolLM2-135M-Instruct"
DEFAULT_MAX_NEW_TOKENS: Final = 128


def _model_port(default: str | None) -> Port:
    if default is None:
        return Port(id="model", name="Model", value_type=ValueType.MODEL)
    return Port(id="model", name="Model", value_type=ValueType.MODEL, default=default)


def _text(port_id: str, name: str = "", **kwargs: Any) -> Port:
    return Port(id=port_id, name=name, value_type=ValueType.TEXT, **kwargs)


class _ModelTask(JobQueueLlmTask):
    """Shared run loop: report 0 %, make the one model call, report 100 %."""

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        models = ctx.require_models()
        ctx.progress(0, f"calling {inputs['model']}")
        output = await self.call_model(models, inputs)
        ctx.progress(100, "done")
        return output

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        raise NotImplementedError


class DownloadModelTask(_ModelTask):
    """Make sure a model is available (downloaded and loaded) before later tasks use it."""

    type = "DownloadModelTask"
    inputs = (_model_port(None),)
    outputs = (_model_port(None),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        info = await models.load_model(inputs["model"])
        return {"model": info.name}


class TextEmbeddingTask(_ModelTask):
    """Turn a text into an embedding vector."""

    type = "TextEmbeddingTask"
    inputs = (_model_port(DEFAULT_EMBEDDING_MODEL), _text("text"))
    outputs = (Port(id="vector", value_type=ValueType.VECTOR),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        embedded = await models.embed(inputs["model"], [str(inputs["text"])])
        return {"vector": _floats(embedded.vectors[0])}


class TextEmbeddingMultiTextTask(_ModelTask):
    """Embed many texts in one batched model call (an order of magnitude faster than one
    call per text); ``vector`` lists one vector per text, in order."""

    type = "TextEmbeddingMultiTextTask"
    inputs = (_model_port(DEFAULT_EMBEDDING_MODEL), _text("text", is_array=True))
    outputs = (Port(id="vector", value_type=ValueType.VECTOR, is_array=True),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        texts = [str(text) for text in _as_list(inputs["text"])]
        vectors = (await models.embed(inputs["model"], texts)).vectors if texts else []
        return {"vector": [_floats(vector) for vector in vectors]}


class TextGenerationTask(_ModelTask):
    """Continue a prompt with a chat/text-generation model."""

    type = "TextGenerationTask"
    inputs = (
        _model_port(DEFAULT_CHAT_MODEL),
        _text("prompt"),
        Port(id="max_new_tokens", value_type=ValueType.INTEGER, default=DEFAULT_MAX_NEW_TOKENS),
    )
    outputs = (_text("text"),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        text = await models.generate(
            inputs["model"], str(inputs["prompt"]), max_new_tokens=int(inputs["max_new_tokens"])
        )
        return {"text": text.text}


class TextQuestionAnswerTask(_ModelTask):
    """Answer a question from a given context text."""

    type = "TextQuestionAnswerTask"
    inputs = (_model_port(DEFAULT_CHAT_MODEL), _text("question"), _text("context"))
    outputs = (_text("answer"),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        answer = await models.answer_question(
            inputs["model"], str(inputs["question"]), str(inputs["context"])
        )
        return {"answer": answer.text}


class TextRewriterTask(_ModelTask):
    """Rewrite a text following an instruction (``prompt``), e.g. "make it formal"."""

    type = "TextRewriterTask"
    inputs = (_model_port(DEFAULT_CHAT_MODEL), _text("prompt"), _text("text"))
    outputs = (_text("text"),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        text = await models.rewrite(inputs["model"], str(inputs["text"]), str(inputs["prompt"]))
        return {"text": text.text}


class TextSummaryTask(_ModelTask):
    """Summarize a text."""

    type = "TextSummaryTask"
    inputs = (_model_port(DEFAULT_CHAT_MODEL), _text("text"))
    outputs = (_text("text"),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        summary = await models.summarize(inputs["model"], str(inputs["text"]))
        return {"text": summary.text}


class TextTranslationTask(_ModelTask):
    """Translate a text from ``source`` to ``target`` language (names or ISO codes)."""

    type = "TextTranslationTask"
    inputs = (
        _model_port(DEFAULT_CHAT_MODEL),
        _text("text"),
        Port(id="source", value_type=ValueType.LANGUAGE, default="en"),
        Port(id="target", value_type=ValueType.LANGUAGE, default="fr"),
    )
    outputs = (_text("text"),)

    async def call_model(self, models: ModelClient, inputs: TaskInput) -> TaskOutput:
        text = await models.translate(
            inputs["model"], str(inputs["text"]), str(inputs["source"]), str(inputs["target"])
        )
        return {"text": text.text}


def _floats(vector: Any) -> list[float]:
    return [float(x) for x in vector]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


# Array variants: one child task per combination of the named array inputs.
DownloadModelMultiModelTask = array_task(DownloadModelTask, ["model"])
TextEmbeddingMultiModelTask = array_task(TextEmbeddingTask, ["model"])
TextGenerationMultiModelTask = array_task(TextGenerationTask, ["model"])
TextGenerationMultiPromptTask = array_task(TextGenerationTask, ["prompt"])
TextQuestionAnswerMultiModelTask = array_task(TextQuestionAnswerTask, ["model"])
TextQuestionAnswerMultiQuestionTask = array_task(TextQuestionAnswerTask, ["question"])
TextRewriterMultiModelTask = array_task(TextRewriterTask, ["model"])
TextRewriterMultiPromptTask = array_task(TextRewriterTask, ["prompt"])
# Every paragraph under every rewriting prompt: the seed pipeline's two rewriter configurations.
TextRewriterMultiPromptTextTask = array_task(TextRewriterTask, ["prompt", "text"])
TextSummaryMultiModelTask = array_task(TextSummaryTask, ["model"])
TextSummaryMultiTextTask = array_task(TextSummaryTask, ["text"])
TextTranslationMultiModelTask = array_task(TextTranslationTask, ["model"])
TextTranslationMultiTargetTask = array_task(TextTranslationTask, ["target"])
TextTranslationMultiTextTask = array_task(TextTranslationTask, ["text"])
