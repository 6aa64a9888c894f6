"""File source and sink tasks: read a text file, write one atomically.

When the runner's resources name a ``file_root``, paths are resolved inside it and may
not leave it (``..`` or symlinks pointing out are refused): the setting for graphs that
arrive over the API.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.task import (
    OutputTask,
    Port,
    Task,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
)

_ENCODING = Port(id="encoding", value_type=ValueType.TEXT, default="utf-8")


def resolve_path(path: Any, resources: Mapping[str, Any]) -> Path:
    """``path`` as a Path, confined to ``resources["file_root"]`` when that is set."""
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise TaskInputError(f"path must be a non-empty string, not {path!r}")
    root = resources.get("file_root")
    if root is None:
        return Path(path)
    base = Path(root).resolve()
    resolved = (base / path).resolve()
    if not resolved.is_relative_to(base):
        raise TaskInputError(f"path {str(path)!r} is outside the allowed file root")
    return resolved


class FileReadTask(Task):
    """Read a text file. Not cached: the file may change between runs."""

    type = "FileReadTask"
    category = "Input"
    cacheable = False
    inputs = (Port(id="path", value_type=ValueType.PATH), _ENCODING)
    outputs = (Port(id="text", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = resolve_path(inputs["path"], ctx.resources)
        text = await asyncio.to_thread(path.read_text, encoding=str(inputs["encoding"]))
        return {"text": text}


class FileWriteTask(OutputTask):
    """Write ``text`` to ``path`` (parent folders created); ``path`` is passed on.

    The write is atomic: readers see the old file or the new one, never half of it.
    """

    type = "FileWriteTask"
    category = "Output"
    inputs = (
        Port(id="path", value_type=ValueType.PATH),
        Port(id="text", value_type=ValueType.TEXT),
        _ENCODING,
    )
    outputs = (Port(id="path", value_type=ValueType.PATH),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = resolve_path(inputs["path"], ctx.resources)
        data = str(inputs["text"]).encode(str(inputs["encoding"]))
        await asyncio.to_thread(write_atomic, path, data)
        return {"path": str(path)}


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
