"""The estimated cost of a call: a price per million input and output tokens per routed
model, from the table shipped with the gateway (``default_prices.json``) with the
operator's ``[prices]`` over it. A model with no price has no cost estimate (``None``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

from graphmesh.services.gateway.types import Usage

PER = 1_000_000


@dataclass(frozen=True, kw_only=True)
class Price:
    """USD per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_million
            + usage.output_tokens * self.output_per_million
        ) / PER


class PriceTable:
    """Prices by routed model name."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def default(cls) -> PriceTable:
        """The shipped list prices."""
        text = (files(__package__) / "default_prices.json").read_text(encoding="utf-8")
        rows = {name: row for name, row in json.loads(text).items() if not name.startswith("_")}
        return cls({name: Price(**row) for name, row in rows.items()})

    def overridden(self, prices: Mapping[str, Price]) -> PriceTable:
        """This table with ``prices`` replacing or adding entries."""
        return PriceTable({**self._prices, **prices})

    def cost(self, model: str, usage: Usage) -> float | None:
        """The estimated USD cost of ``usage`` on ``model``; ``None`` without a price."""
        price = self._prices.get(model)
        return None if price is None else price.cost(usage)
