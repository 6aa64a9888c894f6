"""SimilarityTask: rank vectors by similarity to a query vector, most similar first."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

Vector = list[float]
Metric = Callable[[Vector, Vector], float]


def cosine_similarity(a: Vector, b: Vector) -> float:
    """Cosine of the angle between ``a`` and ``b``; 0 when either is the zero vector."""
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0


def jaccard_similarity(a: Vector, b: Vector) -> float:
    """Weighted Jaccard: sum of element-wise minima over sum of maxima (for non-negative
    vectors; 0/1 vectors give the set Jaccard index). Two zero vectors are identical: 1."""
    top = sum(max(x, y) for x, y in zip(a, b, strict=True))
    if top == 0:
        return 1.0 if a == b else 0.0
    return sum(min(x, y) for x, y in zip(a, b, strict=True)) / top


def hamming_similarity(a: Vector, b: Vector) -> float:
    """Share of positions where the vectors agree (1 - normalized Hamming distance)."""
    if not a:
        return 1.0
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


METRICS: Final[dict[str, Metric]] = {
    "cosine": cosine_similarity,
    "jaccard": jaccard_similarity,
    "hamming": hamming_similarity,
}


class SimilarityTask(Task):
    """Score each of ``items`` against ``query``; return them most similar first.

    ``indices`` are positions in the original ``items``; ``top_k`` keeps the best k.
    """

    type = "SimilarityTask"
    category = "Vector"
    inputs = (
        Port(id="query", value_type=ValueType.VECTOR),
        Port(id="items", value_type=ValueType.VECTOR, is_array=True),
        Port(id="metric", value_type=ValueType.SIMILARITY_METRIC, default="cosine"),
        Port(id="top_k", name="Top k", value_type=ValueType.INTEGER, optional=True),
    )
    outputs = (
        Port(id="items", value_type=ValueType.VECTOR, is_array=True),
        Port(id="scores", value_type=ValueType.NUMBER, is_array=True),
        Port(id="indices", value_type=ValueType.INTEGER, is_array=True),
    )

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return rank(inputs)

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        return rank(inputs)


def rank(inputs: TaskInput) -> TaskOutput:
    """The similarity ranking for one set of inputs (see :class:`SimilarityTask`)."""
    metric = _metric(inputs.get("metric", "cosine"))
    query = _vector(inputs.get("query"), "query")
    items = [_vector(item, f"items[{i}]") for i, item in enumerate(_items(inputs.get("items")))]
    _check_dimensions(query, items)
    scores = [metric(query, item) for item in items]
    order = sorted(range(len(items)), key=lambda i: (-scores[i], i))
    order = order[: _top_k(inputs.get("top_k"), len(order))]
    return {
        "items": [items[i] for i in order],
        "scores": [scores[i] for i in order],
        "indices": order,
    }


def _metric(name: Any) -> Metric:
    metric = METRICS.get(str(name).lower())
    if metric is None:
        raise TaskInputError(f"metric {name!r} is not one of {', '.join(METRICS)}")
    return metric


def _items(items: Any) -> Sequence[Any]:
    if items is None:
        return []
    if not isinstance(items, list | tuple):
        raise TaskInputError("items must be an array of vectors")
    return items


def _vector(value: Any, what: str) -> Vector:
    if not isinstance(value, list | tuple) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        raise TaskInputError(f"{what} must be an array of numbers")
    return [float(x) for x in value]


def _check_dimensions(query: Vector, items: list[Vector]) -> None:
    for index, item in enumerate(items):
        if len(item) != len(query):
            raise TaskInputError(
                f"items[{index}] has {len(item)} dimensions but query has {len(query)}"
            )


def _top_k(top_k: Any, count: int) -> int:
    if top_k is None:
        return count
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise TaskInputError(f"top_k must be a non-negative integer, not {top_k!r}")
    return top_k
