"""The message codecs of the Connect API: protobuf's binary and JSON forms, with a body
that cannot be read refused as INVALID_ARGUMENT, naming the message and what is wrong.

connect-python 0.9 keeps its codecs in one registry and reports a body its codec cannot
parse as UNKNOWN (HTTP 500) with the parser's text; :func:`install` puts these in its
place. JSON responses are written without indentation (a 10,000-task run is megabytes).
"""

from __future__ import annotations

from typing import Any

from connectrpc import _codec
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

_DEEP = "it is nested too deeply"


class JsonCodec:
    """Protobuf JSON (proto3 JSON mapping), compact."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        try:
            json_format.Parse(bytes(data), message)
        except json_format.ParseError as exc:
            deep = isinstance(exc.__context__, RecursionError) or "recursion" in str(exc)
            raise _unreadable(message, "JSON", _DEEP if deep else str(exc)) from None
        except RecursionError:
            raise _unreadable(message, "JSON", _DEEP) from None
        return message


class BinaryCodec:
    """Protobuf binary."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        try:
            message.ParseFromString(bytes(data))
        except DecodeError:
            reason = "it is truncated, nested more than 100 levels, or a string is not UTF-8"
            raise _unreadable(message, "protobuf", reason) from None
        return message


def _unreadable(message: Message, form: str, reason: str) -> ConnectError:
    kind = message.DESCRIPTOR.name
    return ConnectError(Code.INVALID_ARGUMENT, f"not a valid {kind} in {form}: {reason}")


def install() -> None:
    """Use these codecs for every Connect request of this process."""
    json_codec, binary_codec = JsonCodec(), BinaryCodec()
    _codec._codecs.update(
        {
            _codec.CODEC_NAME_JSON: json_codec,
            _codec.CODEC_NAME_JSON_CHARSET_UTF8: json_codec,
            _codec.CODEC_NAME_PROTO: binary_codec,
        }
    )
