"""The JSON shortcuts of the durable run rows give what the stored text would."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import pytest

from graphmesh.orchestrator.runs.durable.rows import dumps, json_copy, loads, task_status
from graphmesh.orchestrator.task.base import TaskStatus


class Odd:
    def __repr__(self) -> str:
        return "<odd>"


@pytest.mark.parametrize(
    "value",
    [
        {"value": 1, "nested": {"list": [1, 2.5, "x", None, True]}},
        {"tuple": (1, 2), "odd": Odd(), "ordered": OrderedDict(a=1)},
        {1: "int key", "s": "str key"},
        [(), [], {}],
        "text",
        None,
    ],
)
def test_json_copy_is_what_the_stored_text_decodes_to(value: Any) -> None:
    copied = json_copy(value)
    assert copied == loads(dumps(value))
    assert type(copied) is type(loads(dumps(value)))


def test_json_copy_makes_fresh_containers() -> None:
    value = {"inner": {"list": [1]}}
    copied = json_copy(value)
    copied["inner"]["list"].append(2)
    assert value == {"inner": {"list": [1]}}


def test_json_copy_refuses_what_cannot_be_stored() -> None:
    with pytest.raises(ValueError):
        json_copy({"value": math.nan})


def test_task_status_reads_a_column() -> None:
    assert task_status("COMPLETED") is TaskStatus.COMPLETED
    with pytest.raises(ValueError):
        task_status("NOT A STATUS")
