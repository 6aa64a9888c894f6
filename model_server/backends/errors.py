"""The model server's exception tree; callers map it to gRPC codes or ``ModelError`` once.

::

    ModelServerError
    ├── ModelNotFoundError   unknown routed name (NOT_FOUND)
    ├── ModelKindError       an embedder asked to chat, or the reverse (FAILED_PRECONDITION)
    ├── ModelLoadError       files present but unusable (FAILED_PRECONDITION)
    ├── ModelUnavailableError  not ready, or its server unreachable (UNAVAILABLE)
    └── ModelInputError      a request the model cannot take, with the field (INVALID_ARGUMENT)
"""

from __future__ import annotations

from collections.abc import Iterable


class ModelServerError(Exception):
    """Base of every error the model server raises on purpose."""


class ModelNotFoundError(ModelServerError):
    """No model is known by this name."""

    def __init__(self, name: str, known: Iterable[str], *, local_paths: bool = True) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        paths = ", or 'hf:<path to a local model directory>'" if local_paths else ""
        super().__init__(f"unknown model {name!r}: known models are {', '.join(self.known)}{paths}")


class ModelKindError(ModelServerError):
    """The model exists but cannot do what was asked of it."""

    def __init__(self, name: str, *, kind: str, wanted: str) -> None:
        self.name = name
        self.kind = kind
        self.wanted = wanted
        super().__init__(f"model {name!r} is {_a(kind)} model, not {_a(wanted)} model")


class ModelLoadError(ModelServerError):
    """The model's files were found but could not be loaded."""


class ModelUnavailableError(ModelServerError):
    """The model exists but cannot serve now: not loaded or not ready, or its server is down."""


class ModelInputError(ModelServerError):
    """A request the model cannot take; ``field`` names the offending part of it."""

    def __init__(self, field: str, description: str) -> None:
        self.field = field
        self.description = description
        super().__init__(f"{field}: {description}")


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
