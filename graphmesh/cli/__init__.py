"""The ``graphmesh`` command line."""

from graphmesh.cli.app import app

__all__ = ["app"]
