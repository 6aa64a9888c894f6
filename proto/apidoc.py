"""Render the graphmesh.v1 API reference (Markdown) from the protos' own comments.

:func:`render` takes the ``FileDescriptorSet`` protoc writes with ``--include_source_info``
and gives one Markdown page: per file its services (each RPC with request, response,
streaming and comment), messages (a table of fields) and enums (a table of values), every
type name a link to its section. ``proto/generate.py`` writes it to ``docs/api.md`` and its
``--check`` fails when the committed page is stale, as for the stubs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from google.protobuf import descriptor_pb2 as d

# Paths into FileDescriptorProto / DescriptorProto (descriptor.proto field numbers) that
# SourceCodeInfo locations use to point at comments.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4
_ENUM_VALUE, _METHOD = 2, 2
_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in d.FieldDescriptorProto.Type.items()
    if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}
HEADER = """# graphmesh.v1 API reference

Generated from [`proto/graphmesh/v1`](../proto/graphmesh/v1) by `python proto/generate.py`
(`make proto`); do not edit by hand. Every service speaks gRPC with the standard health
(`grpc.health.v1.Health`) and reflection services beside it. Calls take a bearer token in the
`authorization` metadata when the server has auth on, and errors carry `google.rpc` details
(`ErrorInfo` with a reason, `BadRequest` field violations, `RetryInfo`).
"""


def render(files: d.FileDescriptorSet) -> str:
    """The whole reference page."""
    ours = [f for f in files.file if f.package.startswith("graphmesh.")]
    parts = [HEADER, _contents(ours)]
    for file in ours:
        parts.append(_file(file))
    return "\n".join(parts).rstrip() + "\n"


def _contents(files: Sequence[d.FileDescriptorProto]) -> str:
    lines = ["## Contents", ""]
    for file in files:
        lines.append(f"- [`{file.name}`](#{_slug(file.name)})")
        for service in file.service:
            full = f"{file.package}.{service.name}"
            lines.append(f"  - service [{service.name}](#{_slug(full)})")
    return "\n".join(lines) + "\n"


def _file(file: d.FileDescriptorProto) -> str:
    comments = _Comments(file)
    out = [f"## `{file.name}`", ""]
    for index, service in enumerate(file.service):
        out += _service(file.package, service, comments, (_SERVICE, index))
    for index, message in enumerate(file.message_type):
        out += _message(file.package, message, comments, (_MESSAGE, index))
    for index, enum in enumerate(file.enum_type):
        out += _enum(file.package, enum, comments, (_ENUM, index))
    return "\n".join(out)


def _service(
    package: str, service: d.ServiceDescriptorProto, comments: _Comments, path: tuple[int, ...]
) -> list[str]:
    full = f"{package}.{service.name}"
    out = [f"### {full}", "", comments.text(path), ""]
    out += ["| RPC | request | response | |", "|---|---|---|---|"]
    for index, method in enumerate(service.method):
        request = _link(method.input_type, stream=method.client_streaming)
        response = _link(method.output_type, stream=method.server_streaming)
        text = _cell(comments.text((*path, _METHOD, index)))
        out.append(f"| `{method.name}` | {request} | {response} | {text} |")
    return [*out, ""]


def _message(
    package: str, message: d.DescriptorProto, comments: _Comments, path: tuple[int, ...]
) -> list[str]:
    full = f"{package}.{message.name}"
    out = [f"### {full}", "", comments.text(path), ""]
    if message.field:
        out += ["| field | type | |", "|---|---|---|"]
        oneofs = [oneof.name for oneof in message.oneof_decl]
        for index, field in enumerate(message.field):
            text = _cell(comments.text((*path, _FIELD, index)))
            if field.HasField("oneof_index") and not field.proto3_optional:
                text = f"*oneof `{oneofs[field.oneof_index]}`.* {text}"
            out.append(f"| `{field.name}` | {_field_type(field, message)} | {text} |")
        out.append("")
    for index, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            out += _message(full, nested, comments, (*path, _NESTED, index))
    for index, enum in enumerate(message.enum_type):
        out += _enum(full, enum, comments, (*path, _NESTED_ENUM, index))
    return out


def _enum(
    package: str, enum: d.EnumDescriptorProto, comments: _Comments, path: tuple[int, ...]
) -> list[str]:
    out = [f"### {package}.{enum.name}", "", comments.text(path), ""]
    out += ["| value | number | |", "|---|---|---|"]
    for index, value in enumerate(enum.value):
        text = _cell(comments.text((*path, _ENUM_VALUE, index)))
        out.append(f"| `{value.name}` | {value.number} | {text} |")
    return [*out, ""]


def _field_type(field: d.FieldDescriptorProto, owner: d.DescriptorProto) -> str:
    entry = _map_entry(field, owner)
    if entry is not None:
        key, value = entry.field
        return f"map<{_field_type(key, entry)}, {_field_type(value, entry)}>"
    name = _SCALARS.get(field.type) or _link(field.type_name)
    if field.label == d.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {name}"
    return f"optional {name}" if field.proto3_optional else name


def _map_entry(field: d.FieldDescriptorProto, owner: d.DescriptorProto) -> d.DescriptorProto | None:
    if field.type != d.FieldDescriptorProto.TYPE_MESSAGE:
        return None
    nested = {f".{n.name}": n for n in owner.nested_type if n.options.map_entry}
    return next((n for suffix, n in nested.items() if field.type_name.endswith(suffix)), None)


def _link(type_name: str, *, stream: bool = False) -> str:
    name = type_name.lstrip(".")
    if name.startswith("graphmesh."):
        text = f"[{name.rsplit('.', 1)[-1]}](#{_slug(name)})"
    else:
        text = f"`{name}`"
    return f"stream {text}" if stream else text


def _slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but ``-`` and ``_`` dropped."""
    kept = (c for c in text.lower().replace(" ", "-") if c.isalnum() or c in "-_")
    return "".join(kept)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


class _Comments:
    """Leading comments of a file's elements by their descriptor path."""

    def __init__(self, file: d.FileDescriptorProto) -> None:
        self._by_path = {
            tuple(location.path): location.leading_comments
            for location in file.source_code_info.location
        }

    def text(self, path: tuple[int, ...]) -> str:
        return "\n".join(_lines(self._by_path.get(path, ""))).strip()


def _lines(comment: str) -> Iterator[str]:
    for line in comment.splitlines():
        yield line[1:] if line.startswith(" ") else line
