"""Run mypy --strict and the import-linter contracts over the source folders, under their
installed names.

Both tools derive module names from file paths, and our folders install under other names
(``orchestrator/`` is ``graphmesh.orchestrator``). So this script lays a tree of symlinks,
``.typecheck/graphmesh/{orchestrator,model_server,services,...}``, and checks that tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"orchestrator": "orchestrator", "model_server": "model_server", "services": "services"}


def build_tree() -> Path:
    tree = ROOT / ".typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "graphmesh"
    package.mkdir(parents=True)
    for entry in (ROOT / "graphmesh").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in MAPPING.items():
        (package / name).symlink_to(ROOT / folder)
    return tree


def main() -> int:
    tree = build_tree()
    config = str(ROOT / "pyproject.toml")
    mypy = [sys.executable, "-m", "mypy", "--config-file", config, "-p", "graphmesh"]
    imports = [str(Path(sys.executable).parent / "lint-imports"), config]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.call(mypy, cwd=tree) or subprocess.call(imports, cwd=tree, env=env)


if __name__ == "__main__":
    sys.exit(main())
