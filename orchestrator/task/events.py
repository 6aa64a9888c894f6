"""A tiny synchronous event emitter (the seed's EventEmitter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[..., None]


class EventEmitter:
    """``on``/``off``/``once``/``emit`` by event name; emitting with no listeners is cheap."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> Listener:
        self._listeners.setdefault(event, []).append(listener)
        return listener

    def off(self, event: str, listener: Listener) -> None:
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def once(self, event: str, listener: Listener) -> Listener:
        def fire_once(*args: Any) -> None:
            self.off(event, fire_once)
            listener(*args)

        return self.on(event, fire_once)

    def emit(self, event: str, *args: Any) -> None:
        listeners = self._listeners.get(event)
        if listeners:
            for listener in list(listeners):
                listener(*args)

    def has_listeners(self, event: str) -> bool:
        return bool(self._listeners.get(event))
