"""Chat messages for the text tasks, written for small instruction models.

A 135M-parameter model follows one short, concrete instruction far better than a long
persona, and it copies the shape of its input: so the system prompt says exactly what to
output and nothing else, and the text to work on comes last, clearly labelled.
"""

from __future__ import annotations

from graphmesh.model_server.backends.base import ChatMessage


def _system(content: str) -> ChatMessage:
    return ChatMessage(role="system", content=content)


def _user(content: str) -> ChatMessage:
    return ChatMessage(role="user", content=content)


def generate(prompt: str) -> list[ChatMessage]:
    """A plain user turn; the model's own template supplies its default system prompt."""
    return [_user(prompt)]


def summarize(text: str) -> list[ChatMessage]:
    """Ask for a short summary of ``text``."""
    return [
        _system("You summarize text. Reply with a one or two sentence summary and nothing else."),
        _user(f"Summarize this text:\n\n{text}"),
    ]


def rewrite(text: str, instruction: str) -> list[ChatMessage]:
    """Ask for ``text`` rewritten as ``instruction`` says."""
    return [
        _system("You rewrite text as instructed. Reply with only the rewritten text."),
        _user(f"{instruction.strip()}\n\nText:\n{text}"),
    ]


def translate(text: str, source: str, target: str) -> list[ChatMessage]:
    """Ask for ``text`` translated from ``source`` (may be empty: unknown) into ``target``."""
    origin = f"{source} " if source.strip() else ""
    # Tried against SmolLM2-135M: naming the target language twice, with no persona, gave
    # the shortest replies that stayed in the target language.
    return [
        _system(f"Translate {origin}text to {target}. Output only the {target} translation."),
        _user(text),
    ]


def answer_question(question: str, context: str) -> list[ChatMessage]:
    """Ask ``question`` about ``context``; the question comes last so it survives truncation."""
    return [
        _system(
            "Answer the question using only the context. Reply with a short answer. "
            "If the context does not contain the answer, say you don't know."
        ),
        _user(f"Context:\n{context}\n\nQuestion: {question}"),
    ]
