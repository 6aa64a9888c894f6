"""The text tasks (summarize, rewrite, translate, answer a question) as chat requests for
provider models. Large chat models follow a short system instruction well; the text to work
on comes last, clearly labelled, so that it cannot pass for an instruction."""

from __future__ import annotations

from graphmesh.services.gateway.types import ChatRequest


def summarize(text: str, *, max_tokens: int) -> ChatRequest:
    """Ask for a short summary of ``text``."""
    return ChatRequest.prompt(
        f"Summarize this text:\n\n{text}",
        system="You summarize text. Reply with a short summary and nothing else.",
        max_tokens=max_tokens,
    )


def rewrite(text: str, instruction: str, *, max_tokens: int) -> ChatRequest:
    """Ask for ``text`` rewritten as ``instruction`` says."""
    return ChatRequest.prompt(
        f"{instruction.strip()}\n\nText:\n{text}",
        system="You rewrite text as instructed. Reply with only the rewritten text.",
        max_tokens=max_tokens,
    )


def translate(text: str, source: str, target: str, *, max_tokens: int) -> ChatRequest:
    """Ask for ``text`` translated from ``source`` (empty: unknown) into ``target``."""
    origin = f" from {source.strip()}" if source.strip() else ""
    return ChatRequest.prompt(
        text,
        system=f"Translate the user's text{origin} into {target}. Reply with only the translation.",
        max_tokens=max_tokens,
    )


def answer_question(question: str, context: str, *, max_tokens: int) -> ChatRequest:
    """Ask ``question`` about ``context``; the question comes last."""
    return ChatRequest.prompt(
        f"Context:\n{context}\n\nQuestion: {question}",
        system=(
            "Answer the question using only the context. Reply with a short answer. "
            "If the context does not contain the answer, say you don't know."
        ),
        max_tokens=max_tokens,
    )
