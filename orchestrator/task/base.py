"""The task base class: declared ports, metadata, status, events and input merging."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

from graphmesh.orchestrator.task.events import EventEmitter
from graphmesh.orchestrator.task.ports import MISSING, Port, merge_input

if TYPE_CHECKING:
    from graphmesh.orchestrator.ai.client import ModelClient
    from graphmesh.orchestrator.graph.task_graph import TaskGraph

TaskInput = dict[str, Any]
TaskOutput = dict[str, Any]


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    ABORTING = "ABORTING"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class TaskKind(StrEnum):
    SIMPLE = "simple"
    COMPOUND = "compound"
    OUTPUT = "output"
    JOB_QUEUE = "job_queue"
    ARRAY = "array"


class TaskEvent(StrEnum):
    START = "start"
    PROGRESS = "progress"
    COMPLETE = "complete"
    ERROR = "error"
    ABORT = "abort"


SubgraphRunner = Callable[["TaskGraph", TaskInput], Awaitable[TaskOutput]]
ProgressReporter = Callable[[float, str, Mapping[str, Any] | None], None]


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """What a running task may use besides its inputs.

    ``idempotency_key`` is stable for ``(run_id, task_id)``, so a task that re-runs after a
    crash can make its side effects idempotent. ``tenant`` is the remote tenant the run
    belongs to in service mode, ``None`` for the local user (embedded mode).
    """

    run_id: str
    task_id: str
    provenance: Mapping[str, Any]
    models: ModelClient | None
    report_progress: ProgressReporter
    run_subgraph: SubgraphRunner
    resources: Mapping[str, Any] = field(default_factory=dict)
    tenant: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.task_id}"

    def progress(
        self, percent: float, message: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        """Report progress; the percentage is clamped to 0-100."""
        self.report_progress(min(100.0, max(0.0, float(percent))), message, details)

    def require_models(self) -> ModelClient:
        if self.models is None:
            raise RuntimeError(
                f"task {self.task_id!r} calls a model but the runner has no ModelClient"
            )
        return self.models


_ids = itertools.count(1)


class Task:
    """Base of every task. Subclasses declare ``type``, ports and ``run``.

    A subclass that defines ``type`` is registered in the default task registry, so graphs
    loaded from JSON can name it.
    """

    type: ClassVar[str]
    category: ClassVar[str] = "Utility"
    description: ClassVar[str] = ""
    side_effects: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    # Reaches outside the graph (files, databases): remote tenants need the operator's grant.
    external_access: ClassVar[bool] = False
    version: ClassVar[int] = 1
    kind: ClassVar[TaskKind] = TaskKind.SIMPLE
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            from graphmesh.orchestrator.task.registry import default_registry

            default_registry.register(cls)

    def __init__(
        self,
        *,
        id: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id if id is not None else f"{self.type}_{next(_ids)}"
        self.defaults: TaskInput = dict(defaults or {})
        self.config: dict[str, Any] = dict(config or {})
        self.events = EventEmitter()
        self.status = TaskStatus.PENDING
        self.progress = 0.0
        self.error: BaseException | None = None
        self.run_input: TaskInput = {}
        self.run_output: TaskOutput = {}
        self._input_index = {port.id: port for port in self.input_ports}
        self._output_index = {port.id: port for port in self.output_ports}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r} status={self.status}>"

    # -- ports -------------------------------------------------------------------------
    @property
    def input_ports(self) -> tuple[Port, ...]:
        return self.inputs

    @property
    def output_ports(self) -> tuple[Port, ...]:
        return self.outputs

    def input_port(self, port_id: str) -> Port | None:
        return self._input_index.get(port_id)

    def output_port(self, port_id: str) -> Port | None:
        return self._output_index.get(port_id)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.id)

    # -- inputs ------------------------------------------------------------------------
    def reset_input(self) -> None:
        """Fresh run input: port defaults overlaid with this task's defaults, both copied."""
        run_input: TaskInput = {}
        for port in self.input_ports:
            if port.default is not MISSING:
                run_input[port.id] = port.fresh_default()
        if self.defaults:
            run_input.update(copy.deepcopy(self.defaults))
        self.run_input = run_input
        self.run_output = {}
        self.status = TaskStatus.PENDING
        self.progress = 0.0
        self.error = None

    def copy_for_run(self) -> Self:
        """A copy with this task's definition (id, defaults, config, event listeners) and
        fresh run state, for a run that overlaps another run of the same graph."""
        clone = copy.copy(self)
        clone.reset_input()
        return clone

    def add_input(self, port_id: str, value: Any, *, spread: bool | None = None) -> None:
        """Merge a value arriving over a dataflow: array ports append, scalars overwrite
        (see :func:`~graphmesh.orchestrator.task.ports.merge_input` for ``spread``)."""
        port = self.input_port(port_id)  # not the index: a compound's ports follow its subgraph
        current = self.run_input.get(port_id, MISSING)
        self.run_input[port_id] = merge_input(port, current, value, spread=spread)

    def missing_inputs(self) -> list[str]:
        return [p.id for p in self.input_ports if p.required and p.id not in self.run_input]

    # -- running -----------------------------------------------------------------------
    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        """Do the work; return a dict keyed by output port id."""
        return self.run_reactive(inputs)

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        """The cheap preview path: no models, no side effects. Default: no output."""
        return {}
