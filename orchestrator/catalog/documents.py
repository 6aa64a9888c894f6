"""DocumentSplitterTask: split a plain-text or Markdown document into paragraphs."""

from __future__ import annotations

import re
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

FORMATS: Final = ("txt", "md")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_HEADING = re.compile(r" {0,3}#{1,6}(\s|$)")
_FENCE = re.compile(r" {0,3}(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class DocumentSplitterTask(Task):
    """Split ``text`` into ``paragraphs``.

    ``txt`` splits on blank lines. ``md`` also starts a new paragraph at each heading,
    keeps a heading attached to the paragraph after it and never splits a fenced code
    block. Paragraphs are stripped and empty ones dropped. With ``max_chars``, longer
    paragraphs are cut at sentence ends, then at spaces, then hard.
    """

    type = "DocumentSplitterTask"
    category = "Text"
    inputs = (
        Port(id="text", value_type=ValueType.TEXT),
        Port(id="format", value_type=ValueType.TEXT, default="txt", description="txt or md"),
        Port(id="max_chars", value_type=ValueType.INTEGER, optional=True),
    )
    outputs = (Port(id="paragraphs", value_type=ValueType.TEXT, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return self.run_reactive(inputs)

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        text = str(inputs.get("text") or "").replace("\r\n", "\n")
        fmt = str(inputs.get("format") or "txt").lower()
        if fmt not in FORMATS:
            raise TaskInputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        paragraphs = split_markdown(text) if fmt == "md" else split_text(text)
        max_chars = _max_chars(inputs.get("max_chars"))
        if max_chars is not None:
            paragraphs = [piece for p in paragraphs for piece in limit_length(p, max_chars)]
        return {"paragraphs": paragraphs}


def split_text(text: str) -> list[str]:
    """Plain text: paragraphs are separated by blank lines."""
    return [part.strip() for part in _BLANK_LINES.split(text) if part.strip()]


def split_markdown(text: str) -> list[str]:
    """Markdown: blocks split at blank lines and headings; headings join the next block."""
    paragraphs: list[str] = []
    headings: list[str] = []
    for block in _markdown_blocks(text):
        if _is_heading_only(block):
            headings.append(block)
            continue
        paragraphs.append("\n\n".join([*headings, block]))
        headings = []
    if headings:
        paragraphs.append("\n\n".join(headings))
    return paragraphs


def _markdown_blocks(text: str) -> list[str]:
    blocks: list[list[str]] = [[]]
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and not line.strip():
            blocks.append([])
            continue
        elif not in_fence and _HEADING.match(line):
            blocks.append([])
        blocks[-1].append(line)
    return [b for b in ("\n".join(lines).strip() for lines in blocks) if b]


def _is_heading_only(block: str) -> bool:
    return "\n" not in block and bool(_HEADING.match(block))


def limit_length(paragraph: str, max_chars: int) -> list[str]:
    """Cut ``paragraph`` into pieces of at most ``max_chars`` characters.

    Whole sentences are packed together; a sentence too long for one piece is packed by
    words, and a word too long for one piece is cut.
    """
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) > max_chars:
            units = [
                w[i : i + max_chars] for w in sentence.split() for i in range(0, len(w), max_chars)
            ]
            if current:
                pieces.append(current)
            *full, current = _pack(units, max_chars) or [""]
            pieces.extend(full)
        elif not current or len(current) + 1 + len(sentence) > max_chars:
            if current:
                pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}"
    if current:
        pieces.append(current)
    return pieces


def _pack(units: list[str], max_chars: int) -> list[str]:
    """Join units with spaces into as few pieces of at most ``max_chars`` as greedily fit."""
    pieces: list[str] = []
    for unit in units:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {unit}"
        else:
            pieces.append(unit)
    return pieces


def _max_chars(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TaskInputError(f"max_chars must be a positive integer, not {value!r}")
    return value
