"""``python -m graphmesh.cli``: the ``graphmesh`` command, for child processes and hosts
where the console script is not on PATH."""

from graphmesh.cli import app

app()
