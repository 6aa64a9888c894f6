"""How the engine reaches models: the ModelClient interface and model descriptions."""

from graphmesh.orchestrator.ai.client import ModelClient, ModelError, ModelInfo

__all__ = ["ModelClient", "ModelError", "ModelInfo"]
