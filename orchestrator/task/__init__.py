"""The task model: ports, the Task base class, task kinds and the registry."""

from graphmesh.orchestrator.task.base import (
    Task,
    TaskContext,
    TaskEvent,
    TaskInput,
    TaskKind,
    TaskOutput,
    TaskStatus,
)
from graphmesh.orchestrator.task.kinds import (
    MODEL_PORT,
    ArrayTask,
    CompoundTask,
    JobQueueLlmTask,
    JobQueueTask,
    OutputTask,
    array_task,
)
from graphmesh.orchestrator.task.ports import MISSING, Port, ValueType
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

__all__ = [
    "MISSING",
    "MODEL_PORT",
    "ArrayTask",
    "CompoundTask",
    "JobQueueLlmTask",
    "JobQueueTask",
    "OutputTask",
    "Port",
    "Task",
    "TaskContext",
    "TaskEvent",
    "TaskInput",
    "TaskKind",
    "TaskOutput",
    "TaskRegistry",
    "TaskStatus",
    "ValueType",
    "array_task",
    "default_registry",
]
