"""File source and sink tasks: read a text file, write one atomically.

Where a path leads is :mod:`.paths`' rule: a remote tenant's paths stay inside its data
root (no absolute paths, ``..`` or links out); the local user's relative writes go under the
engine's state directory.
"""

from __future__ import annotations

import asyncio

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.catalog.paths import (
    local_path,
    read_confined,
    write_atomic,
    write_confined,
)
from graphmesh.orchestrator.policy import tenant_access
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


class FileReadTask(Task):
    """Read a text file. Not cached: the file may change between runs."""

    type = "FileReadTask"
    category = "Input"
    cacheable = False
    external_access = True
    inputs = (Port(id="path", value_type=ValueType.PATH), _ENCODING)
    outputs = (Port(id="text", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        policy = tenant_access(ctx)
        if policy is None:
            path = local_path(inputs["path"], ctx.resources, written=False)
            data = await asyncio.to_thread(path.read_bytes)
        else:
            data = await asyncio.to_thread(read_confined, policy, inputs["path"])
        return {"text": _decode(data, str(inputs["encoding"]))}


class FileWriteTask(OutputTask):
    """Write ``text`` to ``path`` (parent folders created); ``path`` is passed on.

    The write is atomic: readers see the old file or the new one, never half of it.
    """

    type = "FileWriteTask"
    category = "Output"
    external_access = True
    inputs = (
        Port(id="path", value_type=ValueType.PATH),
        Port(id="text", value_type=ValueType.TEXT),
        _ENCODING,
    )
    outputs = (Port(id="path", value_type=ValueType.PATH),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        data = _encode(str(inputs["text"]), str(inputs["encoding"]))
        policy = tenant_access(ctx)
        if policy is not None:
            await asyncio.to_thread(write_confined, policy, inputs["path"], data)
            return {"path": inputs["path"]}  # the tenant's own path, never the server's
        path = local_path(inputs["path"], ctx.resources, written=True)
        await asyncio.to_thread(write_atomic, path, data)
        return {"path": str(path)}


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError:
        raise TaskInputError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as error:
        raise TaskInputError(f"the file is not valid {encoding}: {error.reason}") from None


def _encode(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding)
    except LookupError:
        raise TaskInputError(f"unknown encoding {encoding!r}") from None
    except UnicodeEncodeError as error:
        raise TaskInputError(f"the text cannot be written as {encoding}: {error.reason}") from None
