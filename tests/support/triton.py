"""Starts the real Triton Inference Server for the tests, from ``.triton-venv``.

``make triton`` (``tools/triton.sh``, part of ``make test``) installs the ``nvidia-pytriton``
wheel there; ``GRAPHMESH_TEST_TRITON_VENV`` points elsewhere. From that wheel we use only the
server: ``pytriton/tritonserver/bin/tritonserver``, its python backend, and the stub built for
the environment's Python (``python_backend_stubs/<major.minor>``), which is laid beside the
backend the way pytriton itself does it. The server needs the wheel's bundled libraries and
that Python's ``libpython`` on ``LD_LIBRARY_PATH``; with the environment's ``bin`` first on
``PATH`` the stub's embedded interpreter takes the environment's site-packages (numpy<2,
torch, the packaged MiniLM) for the models in ``tests/support/triton_models``.

A missing environment is an error, never a skip: the Triton tests must run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(__file__).resolve().parent / "triton_models"
VENV_VARIABLE = "GRAPHMESH_TEST_TRITON_VENV"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, kw_only=True)
class TritonInstall:
    """The pieces of the nvidia-pytriton wheel the server needs, and its Python's."""

    venv: Path
    server: Path
    backend: Path
    stub: Path
    libraries: tuple[Path, ...]


def triton_install() -> TritonInstall:
    """The server in ``.triton-venv`` (or ``$GRAPHMESH_TEST_TRITON_VENV``); an error if absent."""
    venv = Path(os.environ.get(VENV_VARIABLE, ROOT / ".triton-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no Triton environment at {venv}: run `make triton` (tools/triton.sh)")
    probe = (
        "import json, pathlib, sys, sysconfig, pytriton;"
        "print(json.dumps([str(pathlib.Path(pytriton.__file__).parent),"
        " f'{sys.version_info[0]}.{sys.version_info[1]}', sysconfig.get_config_var('LIBDIR')]))"
    )
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    package, version, libdir = json.loads(found.stdout)
    package_dir = Path(package)
    root = package_dir / "tritonserver"
    install = TritonInstall(
        venv=venv,
        server=root / "bin" / "tritonserver",
        backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libraries=(Path(libdir), package_dir.parent / "nvidia_pytriton.libs"),
    )
    for path in (install.server, install.backend, install.stub):
        if not path.exists():
            raise RuntimeError(f"the nvidia-pytriton wheel in {venv} lacks {path}")
    return install


def model_repository(directory: Path, models: Iterable[str]) -> Path:
    """A model repository in ``directory`` with the named test models, each as version 1."""
    for name in models:
        source = MODELS / name
        (directory / name / "1").mkdir(parents=True)
        shutil.copy(source / "config.pbtxt", directory / name / "config.pbtxt")
        shutil.copy(source / "model.py", directory / name / "1" / "model.py")
    return directory


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TritonProcess:
    """One ``tritonserver`` in explicit model-control mode, gRPC only, on a free port."""

    def __init__(self, install: TritonInstall, repository: Path, workdir: Path) -> None:
        self.install = install
        self.repository = repository
        self.workdir = workdir
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log = workdir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, load: Iterable[str] = ()) -> None:
        """Start the server, loading ``load`` at startup, and wait until it is live."""
        backends = self._backend_directory()
        command = [
            str(self.install.server),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in load),
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.port}",
            "--allow-http=false",
            "--allow-metrics=false",
            "--exit-timeout-secs=3",
        ]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._environment()
            )
        self._wait_live()

    def kill(self) -> None:
        """SIGKILL the server (and so its stubs' parent) and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server gracefully, killing it if it lingers."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _backend_directory(self) -> Path:
        python = self.workdir / "backends" / "python"
        if not python.exists():
            python.mkdir(parents=True)
            for item in self.install.backend.iterdir():
                if item.is_file():
                    (python / item.name).symlink_to(item)
            shutil.copy(self.install.stub, python / "triton_python_backend_stub")
        return python.parent

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libraries = [str(p) for p in self.install.libraries]
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        env["PATH"] = os.pathsep.join([str(self.install.venv / "bin"), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return env

    def _wait_live(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with triton_grpc.InferenceServerClient(self.url) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited:\n{self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=2):
                        return
                except InferenceServerException:
                    pass
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"tritonserver did not become ready:\n{self.log_tail()}")


@contextmanager
def triton_server(
    workdir: Path, models: Iterable[str], *, load: Iterable[str] = ()
) -> Iterator[TritonProcess]:
    """A running server over a fresh repository of ``models``; stopped when the block ends."""
    repository = model_repository(workdir / "models", models)
    server = TritonProcess(triton_install(), repository, workdir)
    server.start(load)
    try:
        yield server
    finally:
        server.stop()
