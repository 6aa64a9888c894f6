"""Build a graph in Python, run it, and turn it into code and JSON.

Run with ``.venv/bin/python examples/builder_quickstart.py``. No model is needed: it uses
an in-process Python function (LambdaTask), the JavaScript sandbox and a similarity ranking.
"""

from __future__ import annotations

import asyncio
import json

from graphmesh import TaskGraphBuilder, graph_to_code


def word_lengths(words: list[str]) -> list[int]:
    return [len(word) for word in words]


async def main() -> None:
    builder = (
        TaskGraphBuilder()
        .document_splitter(text="Tasks.\n\nGraphs of tasks.\n\nDataflows join tasks.", id="split")
        .javascript(code="return input.map(p => p.split(' ').length)", id="count_words")
    )
    result = await builder.run()
    print("words per paragraph:", result.output["output"])

    # A Python callable runs only in process: such a graph can be run, not sent over the API.
    lambda_builder = TaskGraphBuilder().lambda_(fn=word_lengths, input=["graph", "mesh"])
    print("lambda:", (await lambda_builder.run()).output["output"])

    # The JSON form and the generated Python code describe the same graph.
    print(json.dumps(builder.to_json())[:80], "...")
    print(graph_to_code(builder.graph))


if __name__ == "__main__":
    asyncio.run(main())
