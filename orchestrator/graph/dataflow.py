"""DataFlow: the edge from one task's output port to another task's input port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Wiring this pseudo output port keeps a run going when the source task fails: the target
# receives ``{"type": ..., "message": ...}`` instead of the run failing.
ERROR_PORT: Final = "[error]"


@dataclass(frozen=True, kw_only=True, slots=True)
class DataFlow:
    source_task: str
    source_port: str
    target_task: str
    target_port: str

    def __str__(self) -> str:
        return f"{self.source_task}.{self.source_port} -> {self.target_task}.{self.target_port}"

    @property
    def carries_error(self) -> bool:
        return self.source_port == ERROR_PORT
