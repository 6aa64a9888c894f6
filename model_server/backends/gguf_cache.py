"""De-quantized GGUF weights kept on disk, so a model de-quantizes once, not at every start.

transformers reads a GGUF file by de-quantizing every tensor (about 24 s for the packaged
SmolLM2 on a CPU). :func:`cached` saves the result with ``save_pretrained`` (safetensors)
under ``$GRAPHMESH_MODEL_CACHE`` (default ``~/.cache/graphmesh/models``, or under
``$XDG_CACHE_HOME``), keyed by the GGUF file's path, size and modification time and the
transformers and torch versions, so a changed file or library makes a new entry. An entry is
written into a temporary directory and renamed into place with a ``complete`` marker written
last; an entry without the marker, or one that fails to load, is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_ENV = "GRAPHMESH_MODEL_CACHE"
MARKER = "complete"


def cache_root() -> Path:
    """Where de-quantized models are kept."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "graphmesh" / "models"


def entry_for(gguf: Path) -> Path:
    """The cache directory ``gguf`` de-quantizes into (it may not exist yet)."""
    import torch
    import transformers

    stat = gguf.stat()
    key = "\n".join(
        [
            str(gguf.resolve()),
            str(stat.st_size),
            str(stat.st_mtime_ns),
            transformers.__version__,
            torch.__version__,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_root() / f"{gguf.stem}-{digest}"


def is_complete(entry: Path) -> bool:
    """True when ``entry`` was written to the end."""
    return (entry / MARKER).is_file()


def discard(entry: Path) -> None:
    """Remove a cache entry (one that failed to load)."""
    shutil.rmtree(entry, ignore_errors=True)


def cached(gguf: Path, load: Callable[[], tuple[Any, Any]]) -> Path:
    """A directory holding ``gguf`` de-quantized (model and tokenizer), building it with
    ``load() -> (model, tokenizer)`` when missing or incomplete."""
    entry = entry_for(gguf)
    if is_complete(entry) and _loadable(entry):
        return entry
    model, tokenizer = load()
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        _forget_gguf_origin(model)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(f"{gguf.name}\n", encoding="utf-8")
        if entry.exists():  # an incomplete or corrupt entry: replace it
            shutil.rmtree(entry, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:
            # Another process finished the same entry first: theirs is as good as ours.
            if not is_complete(entry):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _forget_gguf_origin(model: Any) -> None:
    """The weights are plain float tensors once de-quantized, but transformers still marks
    the model as GGUF-quantized and refuses to save it; drop the mark so it saves (and
    loads back) as an ordinary checkpoint."""
    model.hf_quantizer = None
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    for attribute in ("is_quantized", "quantization_method"):
        if attribute in vars(model):
            delattr(model, attribute)


def _loadable(entry: Path) -> bool:
    """A cheap check that the entry's files are whole: the config parses and the safetensors
    header reads; a truncated or damaged entry is rebuilt rather than failing the load."""
    import json

    from safetensors import safe_open

    try:
        json.loads((entry / "config.json").read_text(encoding="utf-8"))
        weights = sorted(entry.glob("*.safetensors"))
        if not weights:
            return False
        for path in weights:
            with safe_open(str(path), framework="pt") as handle:
                list(handle.keys())
    except (OSError, ValueError, RuntimeError):
        return False
    except Exception:  # safetensors raises its own SafetensorError for damaged headers
        return False
    return True
