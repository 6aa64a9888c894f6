"""Where file and SQLite tasks read and write, for the local user and for remote tenants.

**A remote tenant** (``TaskContext.tenant`` set) reaches only its data root, from the
operator's policy (:func:`~graphmesh.orchestrator.policy.tenant_access`): a path is a
relative one inside it. Absolute paths, ``..``, empty components, NUL, backslashes and
``file:`` URIs are refused, and every component is opened relative to the one before it
without following symlinks (``openat`` with ``O_NOFOLLOW``), so no symlink leads out,
whenever it was made. Messages name the tenant's own relative path, never the server's.
Without a data root, file tasks are refused.

**The local user** (embedded mode) reaches what they can: absolute paths as given; a
relative path of what a graph *writes* (FileWriteTask, SQLite databases) resolves under the
engine's state directory (``resources["state_dir"]``, so a read-only working directory is
fine), and a relative path of a file it *reads* under the working directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.policy import TaskPolicyError, TenantPolicy

STATE_DIR_RESOURCE = "state_dir"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def relative_parts(path: Any) -> tuple[str, ...]:
    """A tenant's path as its components; a clear error for anything that could escape."""
    if not isinstance(path, str) or not path:
        raise TaskInputError(f"path must be a non-empty string, not {path!r}")
    if "\x00" in path or "\\" in path or path.startswith("file:"):
        raise TaskPolicyError(f"path {path!r} is not a plain relative path")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise TaskPolicyError(f"path {path!r} must be relative to the tenant's data root")
    parts = tuple(part for part in pure.parts if part != ".")
    if not parts or ".." in parts:
        raise TaskPolicyError(f"path {path!r} must stay inside the tenant's data root")
    return parts


def data_root(policy: TenantPolicy) -> Path:
    if policy.data_root is None:
        raise TaskPolicyError(
            f"tenant {policy.tenant!r} has no data root: the operator's policy grants no files"
        )
    return policy.data_root


@contextlib.contextmanager
def _open_dir(root: Path, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
    """A descriptor of ``root/parts...``, each component opened without following links
    (created when ``create``); closed when the block ends."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIRECTORY)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            child = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _refused(path: str, error: OSError) -> GraphmeshError:
    if error.errno in (40, 20):  # ELOOP (a symlink), ENOTDIR (a symlink or a file)
        return TaskPolicyError(f"path {path!r} leads through a link or a non-folder")
    if isinstance(error, FileNotFoundError):
        return TaskInputError(f"no file {path!r} in the tenant's data root")
    return TaskInputError(f"cannot use {path!r}: {error.strerror}")


def read_confined(policy: TenantPolicy, path: str) -> bytes:
    """The bytes of a regular file inside the tenant's data root."""
    parts = relative_parts(path)
    try:
        with _open_dir(data_root(policy), parts[:-1], create=False) as folder:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise TaskInputError(f"{path!r} is not a regular file")
                return handle.read()
    except OSError as error:
        raise _refused(path, error) from None


def write_confined(policy: TenantPolicy, path: str, data: bytes) -> None:
    """Write atomically (a temporary file renamed over the target) inside the data root."""
    parts = relative_parts(path)
    try:
        with _open_dir(data_root(policy), parts[:-1], create=True) as folder:
            _write_atomic_at(folder, parts[-1], data)
    except OSError as error:
        raise _refused(path, error) from None


def confined_database(policy: TenantPolicy, path: str, *, create: bool) -> Path:
    """The server path of a SQLite database inside the data root, checked link by link;
    its folders are created when ``create``. The file itself, when it exists, must be a
    regular file (tenants can make no links, so what is checked stays as it is)."""
    parts = relative_parts(path)
    root = data_root(policy)
    try:
        with _open_dir(root, parts[:-1], create=create) as folder:
            try:
                info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
            else:
                if not stat.S_ISREG(info.st_mode):
                    raise TaskPolicyError(f"{path!r} is not a regular file")
    except OSError as error:
        raise _refused(path, error) from None
    return root.joinpath(*parts)


def local_path(path: Any, resources: Mapping[str, Any], *, written: bool) -> Path:
    """The local user's path (see the module docstring)."""
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise TaskInputError(f"path must be a non-empty string, not {path!r}")
    resolved = Path(path)
    state_dir = resources.get(STATE_DIR_RESOURCE)
    if written and state_dir is not None and not resolved.is_absolute():
        return Path(state_dir) / resolved
    return resolved


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_atomic_at(folder, path.name, data)
    finally:
        os.close(folder)


def _write_atomic_at(folder: int, name: str, data: bytes) -> None:
    temp = f".{name}.{uuid.uuid4().hex}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    # 0o666: the umask decides the mode, as a plain open() would.
    fd = os.open(temp, flags, 0o666, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # rename() replaces a link named ``name`` itself, never what it points to.
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        raise
