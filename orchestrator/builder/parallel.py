"""ParallelTask: the compound task ``TaskGraphBuilder.parallel`` makes from its branches."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from graphmesh.orchestrator.errors import GraphError
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.task.kinds import CompoundTask


class ParallelTask(CompoundTask):
    """Independent branches in one subgraph; the runner starts them all at once.

    Its inputs are the inputs of the branches' first tasks (an input reaches every branch
    that has it); its outputs are the last tasks' outputs merged, later branches winning
    when two share a port id.
    """

    type = "ParallelTask"
    description = "Runs independent branches concurrently"

    def reset_input(self) -> None:
        """Only inputs given to this task reach the branches, never its ports' defaults.

        The ports are borrowed from the branches' first tasks; forwarding their port
        defaults would overwrite each branch task's own defaults (CompoundTask does this).
        """
        super().reset_input()
        self.run_input = copy.deepcopy(self.defaults)


def merge_branches(branches: Iterable[TaskGraph]) -> TaskGraph:
    """One graph holding every branch's tasks and dataflows; task ids must be distinct."""
    merged = TaskGraph()
    for branch in branches:
        for task in branch:
            if task.id in merged:
                raise GraphError(f"parallel: two branches have a task with id {task.id!r}")
            merged.add_task(task)
        for flow in branch.dataflows:
            merged.add_dataflow(flow)
    return merged
