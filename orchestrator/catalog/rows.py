"""Turn parallel arrays of texts and vectors into table rows, ready for an insert task."""

from __future__ import annotations

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType


class EmbeddingRowsTask(Task):
    """Pair each text with its vector: ``rows[i] = {"position", "text", "vector", "source"?}``.

    The two arrays must be the same length (the i-th vector embeds the i-th text).
    """

    type = "EmbeddingRowsTask"
    category = "Utility"
    description = "Pair texts with their embedding vectors as table rows"
    inputs = (
        Port(id="text", value_type=ValueType.TEXT, is_array=True),
        Port(id="vector", value_type=ValueType.VECTOR, is_array=True),
        Port(
            id="source", value_type=ValueType.TEXT, optional=True, description="a constant column"
        ),
    )
    outputs = (Port(id="rows", value_type=ValueType.JSON, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return self.run_reactive(inputs)

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        texts, vectors = list(inputs.get("text", [])), list(inputs.get("vector", []))
        if len(texts) != len(vectors):
            raise TaskInputError(
                f"{self.type} {self.id!r}: got {len(texts)} texts but {len(vectors)} vectors"
            )
        extra = {"source": inputs["source"]} if inputs.get("source") is not None else {}
        rows = [
            {"position": i, "text": text, "vector": vector, **extra}
            for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
        ]
        return {"rows": rows}
