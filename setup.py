"""Maps the top-level folders onto the one import namespace ``graphmesh.*``.

``orchestrator/`` installs as ``graphmesh.orchestrator``, ``model_server/`` as
``graphmesh.model_server`` and ``services/`` as ``graphmesh.services``; everything else
(metadata, dependencies, extras) lives in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

ROOTS = {
    "graphmesh": "graphmesh",
    "graphmesh.orchestrator": "orchestrator",
    "graphmesh.model_server": "model_server",
    "graphmesh.services": "services",
}

packages: list[str] = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
