"""Regenerate the Python gRPC stubs of the graphmesh contract.

Usage (from anywhere; paths are relative to the repository)::

    python proto/generate.py           # rewrite graphmesh/v1/*_pb2*.py[i] and docs/api.md
    python proto/generate.py --check   # exit 1, naming the stale files, if they would change

``proto/`` is the protoc include root and the repository root the output root, so the
generated modules live in ``graphmesh/v1/`` and import each other as ``from graphmesh.v1 import
...``. Besides ``--python_out`` and ``--grpc_python_out`` it runs mypy-protobuf's
``--mypy_out``/``--mypy_grpc_out`` for typed ``.pyi`` stubs. Output is deterministic: the same
protos and the same pinned ``grpcio-tools``/``mypy-protobuf`` always give the same bytes.
The API reference ``docs/api.md`` is rendered from the same run's descriptors and comments
(:mod:`apidoc`).
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]  # ships no type hints

sys.path.insert(0, str(Path(__file__).resolve().parent))
import apidoc  # beside this script, which is no package

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = Path("graphmesh") / "v1"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")
API_DOC = Path("docs") / "api.md"
DESCRIPTORS = "descriptors.binpb"


def proto_files() -> list[str]:
    """The contract's .proto files relative to ``proto/``, sorted for a stable order."""
    files = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    return [path.relative_to(PROTO_ROOT).as_posix() for path in files]


def find_plugin(name: str) -> str:
    """Locate a protoc plugin, preferring the running interpreter's own bin directory."""
    # The plugins are console scripts of mypy-protobuf; a venv's bin dir is often not on PATH.
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extra (mypy-protobuf)")
    return found


def run_protoc(out_dir: Path) -> None:
    """Generate every stub for every proto file under ``out_dir``."""
    wkt_include = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={wkt_include}",
        *(f"--plugin={name}={find_plugin(name)}" for name in PLUGINS),
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        f"--descriptor_set_out={out_dir / DESCRIPTORS}",
        "--include_source_info",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    descriptors = descriptor_pb2.FileDescriptorSet.FromString((out_dir / DESCRIPTORS).read_bytes())
    (out_dir / API_DOC).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / API_DOC).write_text(apidoc.render(descriptors), encoding="utf-8")


def generated_files(root: Path) -> set[str]:
    """Names of the generated stub files in ``root / graphmesh/v1``."""
    package = root / PACKAGE_DIR
    return {path.name for pattern in GENERATED_PATTERNS for path in package.glob(pattern)}


def stale_files(fresh_root: Path) -> list[str]:
    """Committed stubs that differ from a fresh generation, are missing, or are orphaned."""
    fresh, committed = generated_files(fresh_root), generated_files(REPO_ROOT)
    reasons = {name: "missing" for name in fresh - committed}
    reasons |= {name: "no .proto generates it" for name in committed - fresh}
    for name in fresh & committed:
        new, old = fresh_root / PACKAGE_DIR / name, REPO_ROOT / PACKAGE_DIR / name
        if not filecmp.cmp(new, old, shallow=False):
            reasons[name] = "differs"
    stale = [f"{(PACKAGE_DIR / name).as_posix()} ({why})" for name, why in sorted(reasons.items())]
    doc = REPO_ROOT / API_DOC
    if not doc.exists() or not filecmp.cmp(fresh_root / API_DOC, doc, shallow=False):
        stale.append(f"{API_DOC.as_posix()} ({'differs' if doc.exists() else 'missing'})")
    return stale


def install(fresh_root: Path) -> None:
    """Replace the committed stubs with a fresh generation, removing orphaned ones."""
    target = REPO_ROOT / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(generated_files(REPO_ROOT) - generated_files(fresh_root)):
        (target / name).unlink()
    for name in sorted(generated_files(fresh_root)):
        shutil.copyfile(fresh_root / PACKAGE_DIR / name, target / name)
    (REPO_ROOT / API_DOC).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fresh_root / API_DOC, REPO_ROOT / API_DOC)
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs of the graphmesh.v1 contract (see proto/)."""\n')


def tool_versions() -> str:
    """The generator versions in use; stubs only match when they equal the dev-extra pins."""
    tools = ("grpcio-tools", "mypy-protobuf")
    return ", ".join(f"{tool} {importlib.metadata.version(tool)}" for tool in tools)


def main(argv: list[str] | None = None) -> int:
    """Generate into a temporary directory, then install or compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed stubs are stale"
    )
    check = parser.parse_args(argv).check
    with tempfile.TemporaryDirectory(prefix="graphmesh-protos-") as tmp:
        fresh_root = Path(tmp)
        run_protoc(fresh_root)
        if not check:
            install(fresh_root)
            return 0
        stale = stale_files(fresh_root)
    if stale:
        print("Generated files are stale; run `python proto/generate.py`:", file=sys.stderr)
        print("\n".join(f"  {name}" for name in stale), file=sys.stderr)
        print(f"(compared with output of {tool_versions()})", file=sys.stderr)
        return 1
    print(f"Generated stubs and API reference are up to date ({len(proto_files())} proto files).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
