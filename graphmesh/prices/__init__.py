"""Model list prices: USD per million input and output tokens per routed model name.

One table for the whole product: the orchestrator prices each task's usage with it
(``orchestrator/ai/usage.py``, operator overrides from ``GRAPHMESH_MODEL_PRICES_FILE``), the
gateway prices each call (its config's ``[prices]`` over it). A shared library like
``graphmesh.limits``: it imports neither the engine nor a deployable. A model with no price
has no cost estimate (``None``), never a cost of zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol, Self

PER = 1_000_000

__all__ = ["Price", "PriceTable", "TokenCounts", "parse_prices"]


class TokenCounts(Protocol):
    """What a price applies to: any usage record with these two counts."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """USD per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise ValueError(f"price {name} must be a non-negative number, not {value!r}")

    def cost(self, usage: TokenCounts) -> float:
        return (
            usage.input_tokens * self.input_per_million
            + usage.output_tokens * self.output_per_million
        ) / PER


class PriceTable:
    """Prices by routed model name; a model without one has no cost estimate."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def default(cls) -> Self:
        """The shipped list prices (``default_prices.json``)."""
        text = (files(__package__) / "default_prices.json").read_text(encoding="utf-8")
        return cls(parse_prices(json.loads(text), "default_prices.json"))

    @classmethod
    def from_file(cls, path: Path) -> Self:
        """The shipped prices with the operator's JSON file (same shape) over them."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"model prices file {path}: {exc}") from exc
        return cls.default().overridden(parse_prices(data, str(path)))

    def overridden(self, prices: Mapping[str, Price]) -> Self:
        """This table with ``prices`` replacing or adding entries."""
        return type(self)({**self._prices, **prices})

    def price(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, usage: TokenCounts) -> float | None:
        """The estimated USD cost of ``usage`` on ``model``; ``None`` without a price."""
        price = self._prices.get(model)
        return None if price is None else price.cost(usage)


def parse_prices(data: Any, source: str) -> dict[str, Price]:
    """``{model: {input_per_million, output_per_million}}`` checked; ``_`` keys are comments."""
    if not isinstance(data, dict):
        raise ValueError(f"model prices in {source} must be a JSON object of models")
    prices: dict[str, Price] = {}
    for model, row in data.items():
        if model.startswith("_"):
            continue
        if not isinstance(row, dict) or set(row) != {"input_per_million", "output_per_million"}:
            raise ValueError(
                f"model prices in {source}: {model!r} needs exactly "
                "input_per_million and output_per_million"
            )
        try:
            prices[model] = Price(**row)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model prices in {source}: {model!r}: {exc}") from None
    return prices
