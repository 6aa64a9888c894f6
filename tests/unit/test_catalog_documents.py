"""DocumentSplitterTask: plain text and Markdown paragraphs, length limits."""

from __future__ import annotations

from typing import Any

import pytest

from graphmesh.orchestrator.catalog.documents import DocumentSplitterTask
from graphmesh.orchestrator.graph import TaskGraph
from graphmesh.orchestrator.runner import RunStatus, TaskGraphRunner


async def split(**inputs: Any) -> list[str]:
    task = DocumentSplitterTask(id="d", defaults=inputs)
    result = await TaskGraphRunner(TaskGraph([task])).run()
    paragraphs: list[str] = result.raise_for_status().outputs["d"]["paragraphs"]
    return paragraphs


async def test_text_splits_on_blank_lines_and_drops_empties() -> None:
    text = "  First line\nstill first.  \n\n\n   \nSecond.\r\n\r\nThird\n\n"
    assert await split(text=text) == ["First line\nstill first.", "Second.", "Third"]


async def test_markdown_keeps_headings_with_their_paragraph() -> None:
    text = "# Title\n\nIntro text.\n\n## Part\nBody line one\nline two\n\nMore body.\n## Empty"
    assert await split(text=text, format="md") == [
        "# Title\n\nIntro text.",
        "## Part\nBody line one\nline two",
        "More body.",
        "## Empty",
    ]


async def test_markdown_stacks_consecutive_headings() -> None:
    text = "# Book\n\n## Chapter\n\nText."
    assert await split(text=text, format="md") == ["# Book\n\n## Chapter\n\nText."]


async def test_markdown_never_splits_a_code_fence() -> None:
    text = "Intro\n\n```python\nx = 1\n\n# not a heading\ny = 2\n```\n\nAfter"
    assert await split(text=text, format="md") == [
        "Intro",
        "```python\nx = 1\n\n# not a heading\ny = 2\n```",
        "After",
    ]


async def test_plain_text_does_not_treat_hashes_as_headings() -> None:
    assert await split(text="# one\ntwo") == ["# one\ntwo"]


async def test_max_chars_cuts_at_sentences_then_words() -> None:
    text = "One two three. Four five six seven eight nine. Ten."
    pieces = await split(text=text, max_chars=20)
    assert pieces == ["One two three.", "Four five six seven", "eight nine. Ten."]
    assert all(len(p) <= 20 for p in pieces)


async def test_max_chars_hard_cuts_a_long_word() -> None:
    assert await split(text="abcdefghij", max_chars=4) == ["abcd", "efgh", "ij"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"text": "x", "format": "pdf"}, "format 'pdf' is not one of txt, md"),
        ({"text": "x", "max_chars": 0}, "max_chars must be a positive integer"),
    ],
)
async def test_bad_options_fail_clearly(inputs: dict[str, Any], message: str) -> None:
    result = await TaskGraphRunner(TaskGraph([DocumentSplitterTask(id="d", defaults=inputs)])).run()
    assert result.status == RunStatus.FAILED
    assert message in (result.error or "")
