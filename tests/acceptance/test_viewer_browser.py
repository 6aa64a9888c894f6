"""The run viewer in a real headless chromium against a real orchestrator process: sign in,
submit a graph from the editor and watch its nodes turn green live, see validation errors
on the nodes, open a failed task's error, cancel a running run, and never see another
tenant's run. Screenshots are saved under ``test-output/viewer/``; no page may log a
Content-Security-Policy violation or an uncaught error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import browser, call, screenshot_path, viewer_process
from support.run_tasks import flow, sleep_task

GREEN_FILL = "rgb(236, 253, 243)"  # .node.status-completed .node-body
GREEN_STROKE = "rgb(18, 183, 106)"


@pytest.fixture(scope="module")
def viewer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with viewer_process(tmp_path_factory.mktemp("viewer")) as addresses:
        yield addresses.url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser() as launched:
        yield launched


@pytest.fixture
def page(chromium: Browser, viewer_url: str) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    opened.goto(viewer_url)
    yield opened
    context.close()
    assert not problems, problems


def sign_in(page: Page, token: str = "token-a") -> None:
    expect(page.get_by_text("Sign in to this orchestrator")).to_be_visible()
    page.fill("input[name=token]", token)
    page.press("input[name=token]", "Enter")
    expect(page.locator(".token-overlay")).to_have_count(0)


def submit(page: Page, graph: dict[str, Any]) -> str:
    """Type ``graph`` into a new graph's editor, wait for the server to call it valid, and
    run it; returns the run id from the run page's address."""
    page.goto(page.url.split("#")[0] + "#/graphs/new")
    page.fill("textarea.json-editor", json.dumps(graph, indent=2))
    expect(page.locator(".check[data-valid=true]")).to_be_visible()
    page.click("button.primary:has-text('Run')")
    expect(page.locator(".run-page")).to_be_visible()
    return page.url.split("#/runs/")[1]


def node(page: Page, task_id: str) -> Any:
    return page.locator(f"g.node[data-task-id='{task_id}']")


def test_a_submitted_graph_turns_green_live(page: Page) -> None:
    sign_in(page)
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    page.screenshot(path=screenshot_path("runs-empty"))
    graph = {
        "tasks": [
            sleep_task("load", 0.6, value=3),
            sleep_task("embed", 0.6),
            sleep_task("summarize", 1.0),
            sleep_task("store", 0.6),
        ],
        "dataflows": [
            flow("load", "embed"),
            flow("load", "summarize"),
            flow("embed", "store"),
            flow("summarize", "store"),
        ],
    }
    submit(page, graph)
    page.evaluate("window.__sameDocument = true")
    expect(node(page, "load")).to_have_attribute("data-status", "PROCESSING")
    expect(node(page, "store")).to_have_attribute("data-status", "PENDING")
    page.screenshot(path=screenshot_path("run-live"))
    expect(node(page, "summarize")).to_have_attribute("data-status", "PROCESSING")
    expect(node(page, "store")).to_have_attribute("data-status", "COMPLETED", timeout=15_000)
    for task_id in ("load", "embed", "summarize", "store"):
        body = node(page, task_id).locator(".node-body")
        expect(body).to_have_css("fill", GREEN_FILL)
        expect(body).to_have_css("stroke", GREEN_STROKE)
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    assert page.evaluate("window.__sameDocument") is True  # updated live, never reloaded
    node(page, "store").click()
    expect(page.locator(".task-panel .json-block[data-label=output]")).to_contain_text('"value": 3')
    page.screenshot(path=screenshot_path("run-completed"))
    page.goto(page.url.split("#")[0] + "#/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator("table.runs tbody tr td.counts")).to_contain_text("4/4")
    page.screenshot(path=screenshot_path("runs"))


def test_validation_errors_show_on_the_nodes(page: Page) -> None:
    sign_in(page)
    page.goto(page.url.split("#")[0] + "#/graphs/new")
    bad = {
        "tasks": [sleep_task("a"), sleep_task("b")],
        "dataflows": [flow("a", "b", "no_such_port")],
    }
    page.fill("textarea.json-editor", json.dumps(bad, indent=2))
    expect(page.locator(".check")).to_have_text("1 problem(s)")
    expect(page.locator("g.node.invalid[data-task-id=b]")).to_be_visible()
    expect(page.locator("ul.violations")).to_contain_text("tasks[b].no_such_port")
    page.screenshot(path=screenshot_path("editor-violations"))
    page.click("button.primary:has-text('Run')")
    expect(page.locator(".state.error")).to_contain_text("InvalidArgument")
    expect(page.locator(".state.error .violations")).to_contain_text("no_such_port")


def test_a_failed_tasks_error_opens(page: Page, tmp_path: Path) -> None:
    sign_in(page)
    flaky = {
        "id": "fetch",
        "type": "RunTestFlaky",
        "config": {"unless_exists": str(tmp_path / "no")},
    }
    submit(
        page, {"tasks": [sleep_task("start", 0.2), flaky], "dataflows": [flow("start", "fetch")]}
    )
    expect(node(page, "fetch")).to_have_attribute("data-status", "FAILED", timeout=15_000)
    expect(page.locator(".run-head .badge")).to_have_text("failed")
    node(page, "fetch").click()
    expect(page.locator(".task-error")).to_contain_text("the flag file is missing")
    expect(page.get_by_role("button", name="Resume run")).to_be_visible()
    page.screenshot(path=screenshot_path("run-failed"))


def test_cancel_a_running_run(page: Page) -> None:
    sign_in(page)
    submit(
        page,
        {
            "tasks": [sleep_task("slow", 60), sleep_task("after")],
            "dataflows": [flow("slow", "after")],
        },
    )
    expect(node(page, "slow")).to_have_attribute("data-status", "PROCESSING")
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator(".run-head .badge")).to_have_text("cancelled", timeout=15_000)
    expect(node(page, "after")).to_have_attribute("data-status", "SKIPPED")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.get_by_role("button", name="Resume run")).to_be_visible()
    page.screenshot(path=screenshot_path("run-cancelled"))


def test_another_tenants_run_is_not_visible(page: Page, viewer_url: str) -> None:
    graph = json.dumps({"tasks": [sleep_task("theirs")], "dataflows": []})
    theirs = call(
        viewer_url, "CreateRun", {"graphJson": graph, "labels": {"owner": "b"}}, "token-b"
    )
    run_id = theirs["run"]["runId"]
    sign_in(page)
    page.goto(f"{viewer_url}#/runs?labels=owner%3Db")
    expect(page.get_by_text("No runs match these filters.")).to_be_visible()
    page.goto(f"{viewer_url}#/runs")
    expect(page.locator(f"tr[data-run-id='{run_id}']")).to_have_count(0)
    page.goto(f"{viewer_url}#/runs/{run_id}")
    expect(page.locator(".state.error")).to_contain_text("NotFound")
    page.screenshot(path=screenshot_path("other-tenant"))
