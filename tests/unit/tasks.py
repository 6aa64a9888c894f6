"""Task types shared by the engine-core unit tests.

Each type is defined once, here: the default registry rejects a second class under a taken
type name. Type names start with ``Test`` so catalog listings can tell them apart; the Python
names do not, so pytest does not try to collect them as test classes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphmesh.orchestrator.runner import RunnerEvent
from graphmesh.orchestrator.task import (
    CompoundTask,
    JobQueueTask,
    OutputTask,
    Port,
    Task,
    TaskContext,
    TaskEvent,
    TaskInput,
    TaskOutput,
    ValueType,
    array_task,
)


class Signals:
    """Named asyncio.Events shared by a test and its tasks (handed over as a runner resource).

    Tasks set ``<id>.started`` when they begin and ``<id>.cancelled`` when they see
    CancelledError, and wait on the event named by their ``wait`` config.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def __getitem__(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    def is_set(self, name: str) -> bool:
        return name in self._events and self._events[name].is_set()


def signals_of(ctx: TaskContext) -> Signals:
    signals = ctx.resources["signals"]
    assert isinstance(signals, Signals)
    return signals


async def checkpoint(task: Task, ctx: TaskContext) -> None:
    """Announce the start, then wait on the ``wait`` event if one is configured."""
    signals = signals_of(ctx)
    signals[f"{task.id}.started"].set()
    wait = task.config.get("wait")
    if wait is None:
        return
    try:
        await signals[str(wait)].wait()
    except asyncio.CancelledError:
        signals[f"{task.id}.cancelled"].set()
        raise


class Recorder:
    """A run listener keeping every RunnerEvent in order."""

    def __init__(self) -> None:
        self.events: list[RunnerEvent] = []

    def __call__(self, event: RunnerEvent) -> None:
        self.events.append(event)

    def kinds(self, task_id: str) -> list[TaskEvent]:
        return [event.kind for event in self.events if event.task_id == task_id]

    def trace(self) -> list[tuple[str, TaskEvent]]:
        return [(event.task_id, event.kind) for event in self.events]


class CountingTask(Task):
    """Counts calls of ``run`` and ``run_reactive`` on each instance."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs = 0
        self.reactive_runs = 0


class Square(CountingTask):
    type = "TestSquare"
    inputs = (Port(id="input", value_type=ValueType.NUMBER, default=0),)
    outputs = (Port(id="output", value_type=ValueType.NUMBER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        return {"output": inputs["input"] ** 2}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        self.reactive_runs += 1
        return {"output": inputs["input"] ** 2}


class SquareV2(Square):
    """Same type name, bumped version (no ``type`` of its own, so it is not registered)."""

    version = 2


class Add(CountingTask):
    type = "TestAdd"
    inputs = (
        Port(id="a", value_type=ValueType.NUMBER),
        Port(id="b", value_type=ValueType.NUMBER),
    )
    outputs = (Port(id="sum", value_type=ValueType.NUMBER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        return {"sum": inputs["a"] + inputs["b"]}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        self.reactive_runs += 1
        return {"sum": inputs["a"] + inputs["b"]}


class Echo(CountingTask):
    """Passes ``value`` through and remembers what its context said."""

    type = "TestEcho"
    inputs = (Port(id="value", optional=True),)
    outputs = (Port(id="value"),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen_provenance: dict[str, Any] = {}
        self.seen_key = ""

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        self.seen_provenance = dict(ctx.provenance)
        self.seen_key = ctx.idempotency_key
        return {"value": inputs.get("value")}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        self.reactive_runs += 1
        return {"value": inputs.get("value")}


class Collect(CountingTask):
    """An array input: every incoming value is appended."""

    type = "TestCollect"
    inputs = (Port(id="items", is_array=True, default=[]),)
    outputs = (Port(id="items", is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        return {"items": list(inputs["items"])}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        return {"items": list(inputs["items"])}


class Mutate(CountingTask):
    """Mutates its input list and default dict in place, as careless task code might."""

    type = "TestMutate"
    inputs = (
        Port(id="items", is_array=True, default=[]),
        Port(id="options", value_type=ValueType.JSON, default={"seen": 0}),
    )
    outputs = (Port(id="items", is_array=True), Port(id="options", value_type=ValueType.JSON))

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        inputs["items"].append("mutated")
        inputs["options"]["seen"] += 1
        return {"items": list(inputs["items"]), "options": dict(inputs["options"])}


class Gate(CountingTask):
    """Signals its start, waits on its ``wait`` event, then passes ``input`` on."""

    type = "TestGate"
    inputs = (Port(id="input", optional=True),)
    outputs = (Port(id="output"),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        await checkpoint(self, ctx)
        return {"output": inputs.get("input", self.id)}


class Fail(CountingTask):
    """Waits like Gate, then raises ValueError(config ``message``)."""

    type = "TestFail"
    inputs = (Port(id="input", optional=True),)
    outputs = (Port(id="output"),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        await checkpoint(self, ctx)
        raise ValueError(self.config.get("message", "boom"))


class Progress(CountingTask):
    type = "TestProgress"
    outputs = (Port(id="output"),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        ctx.progress(50, "half way", {"step": 1})
        ctx.progress(250, "clamped")
        return {"output": 1}


class NotDict(Task):
    type = "TestNotDict"
    outputs = (Port(id="output"),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return [1, 2]  # type: ignore[return-value]  # the mistake under test


class Empty(Task):
    """Declares an output but never produces it."""

    type = "TestEmpty"
    outputs = (Port(id="output", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {}


class Needs(Task):
    """A required text input with no default."""

    type = "TestNeeds"
    inputs = (Port(id="text", value_type=ValueType.TEXT),)
    outputs = (Port(id="text", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"text": inputs["text"]}


class Handler(CountingTask):
    """Receives what a failed task's ``[error]`` port delivers."""

    type = "TestHandler"
    inputs = (Port(id="error", value_type=ValueType.ERROR),)
    outputs = (Port(id="handled", value_type=ValueType.ERROR),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        return {"handled": inputs["error"]}


class Sink(OutputTask):
    """A side-effect task: never cached."""

    type = "TestSink"
    inputs = (Port(id="value", optional=True),)
    outputs = (Port(id="written"),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs = 0

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        self.runs += 1
        return {"written": inputs.get("value")}


class Queued(JobQueueTask):
    type = "TestQueued"
    inputs = (Port(id="input", value_type=ValueType.NUMBER, default=1),)
    outputs = (Port(id="output", value_type=ValueType.NUMBER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"output": inputs["input"] * 2}


class Compound(CompoundTask):
    type = "TestCompound"


SquareArray = array_task(Square, ["input"])
AddArray = array_task(Add, ["a", "b"])
AddOverA = array_task(Add, ["a"], type_name="TestAddOverA")
