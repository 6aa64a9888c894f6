"""ParallelTask: the compound task ``TaskGraphBuilder.parallel`` makes from its branches."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from graphmesh.orchestrator.errors import GraphError
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.task import Port, TaskContext, TaskInput, TaskOutput
from graphmesh.orchestrator.task.kinds import CompoundTask


class ParallelTask(CompoundTask):
    """Independent branches in one subgraph; the runner starts them all at once.

    Its inputs are the inputs of the branches' first tasks (an input reaches every branch
    that has it); its outputs are the last tasks' outputs. A port id that several of them
    output is an array port gathering every branch's value in branch order (an array value
    is appended item by item, as array inputs merge), so no branch's output is lost.
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

    @property
    def output_ports(self) -> tuple[Port, ...]:
        ports = [port for task in self.subgraph.sinks() for port in task.output_ports]
        shared = _shared_ids(ports)
        merged: dict[str, Port] = {}
        for port in ports:
            merged.setdefault(port.id, replace(port, is_array=True) if port.id in shared else port)
        return tuple(merged.values())

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return self._gather(await ctx.run_subgraph(self.subgraph, inputs))

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        from graphmesh.orchestrator.runner.runner import TaskGraphRunner

        return self._gather(TaskGraphRunner(self.subgraph).run_reactive(inputs).outputs)

    def _gather(self, outputs: Mapping[str, TaskOutput]) -> TaskOutput:
        """The sinks' outputs in branch order; shared port ids collect into lists."""
        sinks = self.subgraph.sinks()
        shared = _shared_ids([port for task in sinks for port in task.output_ports])
        gathered: TaskOutput = {port_id: [] for port_id in shared}
        for task in sinks:
            for port_id, value in outputs.get(task.id, {}).items():
                if port_id not in shared:
                    gathered[port_id] = value
                    continue
                port = task.output_port(port_id)
                spread = port is not None and port.is_array and isinstance(value, list)
                gathered[port_id].extend(value if spread else [value])
        return gathered


def _shared_ids(ports: Iterable[Port]) -> set[str]:
    counts = Counter(port.id for port in ports)
    return {port_id for port_id, count in counts.items() if count > 1}


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
