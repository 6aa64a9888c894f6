"""How the engine reaches models: the ModelClient interface and model descriptions."""

from graphmesh.orchestrator.ai.client import ModelClient, ModelInfo, ModelError

__all__ = ["ModelClient", "ModelError", "ModelInfo"]
