"""Usage metering: what a task's model calls used, and what that is estimated to cost.

The runner hands every task a :class:`MeteredModelClient` around the run's ModelClient, one
:class:`UsageMeter` per task call, so any task that calls a model is metered without doing
anything itself. The meter's total and its estimated cost (:class:`PriceTable`, the
engine's own list prices, which the operator overrides with ``GRAPHMESH_MODEL_PRICES_FILE``)
are stored with the task state and summed per run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from graphmesh.orchestrator.ai.client import (
    NO_USAGE,
    Embedded,
    Generated,
    ModelClient,
    ModelInfo,
    Usage,
)
from graphmesh.prices import Price
from graphmesh.prices import PriceTable as SharedPriceTable

__all__ = [
    "MeteredModelClient",
    "Price",
    "PriceTable",
    "TaskUsage",
    "UsageMeter",
    "default_prices",
    "total_usage",
]

R = TypeVar("R", Embedded, Generated)


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskUsage:
    """What one task (or, summed, one run) used: tokens and the estimated USD cost.

    ``cost_usd`` is ``None`` when no used model has a price (local models, say); a sum is
    priced when any part of it is.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    def __add__(self, other: TaskUsage) -> TaskUsage:
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return TaskUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=cost,
        )

    @property
    def empty(self) -> bool:
        return self.input_tokens == 0 and self.output_tokens == 0 and self.cost_usd is None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }
        if self.cost_usd is not None:
            data["cost_usd"] = self.cost_usd
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TaskUsage:
        if not data:
            return NO_TASK_USAGE
        cost = data.get("cost_usd")
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            cost_usd=None if cost is None else float(cost),
        )


NO_TASK_USAGE = TaskUsage()


def total_usage(usages: Sequence[TaskUsage]) -> TaskUsage:
    total = NO_TASK_USAGE
    for usage in usages:
        total = total + usage
    return total


class PriceTable(SharedPriceTable):
    """The product's price table (:mod:`graphmesh.prices`), pricing a task's usage."""

    def task_usage(self, by_model: Mapping[str, Usage]) -> TaskUsage:
        """The tokens of every model summed, priced where the table knows the model."""
        total = NO_TASK_USAGE
        for model, usage in by_model.items():
            total = total + TaskUsage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=self.cost(model, usage),
            )
        return total


PRICES_FILE_ENV = "GRAPHMESH_MODEL_PRICES_FILE"


@cache
def default_prices() -> PriceTable:
    """The shipped list prices with the operator's ``GRAPHMESH_MODEL_PRICES_FILE`` over
    them, read once per process (servers call this at start-up, so a bad file stops them)."""
    path = os.environ.get(PRICES_FILE_ENV)
    return PriceTable.from_file(Path(path)) if path else PriceTable.default()


class UsageMeter:
    """Token counts of one task call, per model."""

    __slots__ = ("by_model",)

    def __init__(self) -> None:
        self.by_model: dict[str, Usage] = {}

    def add(self, model: str, usage: Usage) -> None:
        if usage != NO_USAGE:
            self.by_model[model] = self.by_model.get(model, NO_USAGE) + usage


class MeteredModelClient:
    """A ModelClient that adds every call's usage to a meter, then returns the result."""

    __slots__ = ("inner", "meter")

    def __init__(self, inner: ModelClient, meter: UsageMeter) -> None:
        self.inner = inner
        self.meter = meter

    async def load_model(self, model: str) -> ModelInfo:
        return await self.inner.load_model(model)

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded:
        return self._count(model, await self.inner.embed(model, texts))

    async def generate(self, model: str, prompt: str, *, max_new_tokens: int = 128) -> Generated:
        result = await self.inner.generate(model, prompt, max_new_tokens=max_new_tokens)
        return self._count(model, result)

    async def summarize(self, model: str, text: str) -> Generated:
        return self._count(model, await self.inner.summarize(model, text))

    async def rewrite(self, model: str, text: str, prompt: str) -> Generated:
        return self._count(model, await self.inner.rewrite(model, text, prompt))

    async def translate(self, model: str, text: str, source: str, target: str) -> Generated:
        return self._count(model, await self.inner.translate(model, text, source, target))

    async def answer_question(self, model: str, question: str, context: str) -> Generated:
        return self._count(model, await self.inner.answer_question(model, question, context))

    def _count(self, model: str, result: R) -> R:
        self.meter.add(model, result.usage)
        return result
