"""The web console in headless Chromium, against the real system as `make run` starts it.

One `agentmgr run` per module (embedded PostgreSQL and NATS, every port a free one) and
one browser; each test gets a fresh browser context (its own sessionStorage, so its own
sign-in). The console is built first (`make web`, a no-op when `dist/` is current).
Chromium is Debian's (`make test` installs it); Playwright never downloads a browser.
Screenshots of the main screens go to `test-output/screenshots/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from libs.common.embedded import free_port
from tests.e2e.test_run_command import RunningSystem

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "services" / "gateway" / "web"
SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What the builder test makes by clicking, and what the API must then return.
NESTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "summary": {"type": "string", "minLength": 1, "description": "one sentence"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "author": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["name"],
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
                "required": ["name", "qty"],
            },
            "minItems": 1,
        },
    },
    "required": ["sentiment", "summary", "author", "items"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Console:
    """The running system: the gateway's URL (console and REST), the admin key, the data dir."""

    url: str
    admin_key: str
    data_dir: Path

    def rest(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=30
        )


@pytest.fixture(scope="module")
def built_console() -> None:
    """`make web`: builds `dist/` when the console's sources changed (as `make test` does)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "web"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (WEB / "dist" / "index.html").is_file()


@pytest.fixture(scope="module")
async def console(built_console, tmp_path_factory) -> AsyncIterator[Console]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    system = RunningSystem(data_dir, free_port())
    key = await system.start()
    try:
        yield Console(url=system.url, admin_key=key, data_dir=data_dir)
    finally:
        assert await system.stop() == 0


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def screenshot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # Sticky bars would be drawn mid-page in a full-page capture.
    unstick = ".topbar, .preview, .sticky-actions { position: static !important; }"
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, style=unstick)


async def sign_in(page: Page, console: Console, key: str | None = None) -> None:
    await page.goto(console.url)
    await page.get_by_label("API key").fill(key or console.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("connection")).to_have_text("Live")


async def go(page: Page, section: str) -> None:
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=section, exact=True).click()


def card(page: Page | Locator, path: str) -> Locator:
    return page.get_by_role("group", name=f"property {path}", exact=True)


async def add_property(page: Page, owner: str, name: str, kind: str) -> Locator:
    """Click "Add property" on `owner` ("response" or a property path), name it, choose its type."""
    await page.get_by_role("button", name=f"Add property to {owner}", exact=True).click()
    prefix = "" if owner == "response" else f"{owner}."
    fresh = card(page, f"{prefix}field_1")
    await fresh.get_by_label("Name", exact=True).first.fill(name)
    added = card(page, f"{prefix}{name}")
    await added.get_by_label("Type", exact=True).first.select_option(kind)
    return added


async def create_test_provider(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await client.post("/v1/providers", json={"name": name, "type": "test"})
    assert response.status_code == 201, response.text
    provider: dict[str, Any] = response.json()
    return provider


async def test_build_a_nested_schema_by_clicking_save_it_and_run_it(console, page):
    await sign_in(page, console)
    await screenshot(page, "01-dashboard-empty")

    # A provider of type test: no key, always valid, answers schema-valid examples.
    await go(page, "Providers")
    await page.get_by_role("link", name="New provider").click()
    await page.get_by_label("Type", exact=True).select_option("openai_compatible")
    await expect(page.get_by_label("Base URL")).to_be_visible()
    await page.get_by_label("Name", exact=True).fill("Not A Name!")
    await page.get_by_label("Type", exact=True).select_option("test")
    await expect(page.get_by_label("Base URL")).to_have_count(0)
    await expect(page.get_by_label("API key")).to_have_count(0)
    await page.get_by_role("button", name="Create provider").click()
    # The API's field violation is shown at the field it names.
    name_field = page.locator(".field").filter(has=page.get_by_label("Name", exact=True))
    await expect(name_field.locator(".field-error")).not_to_have_count(0)
    await expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "02-provider-field-error")
    await page.get_by_label("Name", exact=True).fill("offline")
    await page.get_by_role("button", name="Create provider").click()
    await expect(page.get_by_role("heading", name="offline", level=1)).to_be_visible()
    validation = page.get_by_role("complementary", name="Validation")
    await expect(validation.get_by_text("valid", exact=True)).to_be_visible()
    await expect(page.get_by_role("list", name="Models found").first).to_contain_text("test")
    await screenshot(page, "03-provider")

    # An agent: the provider from the list, the model from what validation found.
    await go(page, "Agents")
    await page.get_by_role("link", name="New agent").click()
    await page.get_by_label("Name", exact=True).fill("reviewer")
    await expect(page.get_by_label("Provider", exact=True)).to_have_value(re.compile(r"^prv_"))
    await expect(page.get_by_label("Model", exact=True)).to_have_value("test")
    await page.get_by_label("System prompt").fill("You review things, briefly.")
    await page.get_by_label("Temperature").fill("0.2")
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.get_by_role("heading", name=re.compile(r"^reviewer"), level=1)).to_be_visible()

    # A task, its schema built card by card.
    await go(page, "Tasks")
    await page.get_by_role("link", name="New task").click()
    await page.get_by_label("Name", exact=True).first.fill("review")
    await page.get_by_label("Instructions").fill("Review the text and list the items it mentions.")
    await page.get_by_label("Prompt template").fill("Review this: {text} {{not a variable}}")
    await expect(page.get_by_role("list", name="Template variables")).to_have_text("text")

    sentiment = await add_property(page, "response", "sentiment", "enum")
    for value in ("positive", "negative", "neutral"):
        await sentiment.get_by_label("New value").fill(value)
        await sentiment.get_by_role("button", name="Add value to sentiment").click()

    summary = await add_property(page, "response", "summary", "string")
    await summary.get_by_label("Description").first.fill("one sentence")
    await summary.get_by_label("Min length").fill("1")

    score = await add_property(page, "response", "score", "number")
    await score.get_by_label("Minimum", exact=True).fill("0")
    await score.get_by_label("Maximum", exact=True).fill("1")
    await score.get_by_label("Required", exact=True).first.uncheck()

    await add_property(page, "response", "author", "object")
    await add_property(page, "author", "name", "string")
    email = await add_property(page, "author", "email", "string")
    await email.get_by_label("Format").select_option("email")
    await email.get_by_label("Required", exact=True).uncheck()

    items = await add_property(page, "response", "items", "array")
    await items.get_by_label("Min items").fill("1")
    await items.get_by_role("group", name="items of items").get_by_label("Item type").select_option("object")
    await add_property(page, "items[]", "name", "string")
    qty = await add_property(page, "items[]", "qty", "integer")
    await qty.get_by_label("Minimum", exact=True).fill("1")

    root = page.get_by_role("group", name="response object")
    await root.get_by_label("Other properties").first.select_option("false")

    # The server's verdict lands on the card its pointer names.
    code = await add_property(page, "response", "code", "string")
    await code.get_by_label("Pattern (regular expression)").fill("(unclosed")
    await expect(code.locator(".issue-error")).to_contain_text("pattern", timeout=5_000)
    await expect(page.get_by_test_id("verdict")).to_contain_text("problem")
    await screenshot(page, "04-task-builder-verdict")
    await page.get_by_role("button", name="Remove code").click()

    await expect(page.get_by_test_id("verdict")).to_contain_text("Valid", timeout=5_000)
    preview = json.loads(await page.get_by_label("JSON Schema preview").inner_text())
    assert preview == NESTED_SCHEMA
    await screenshot(page, "05-task-builder")

    await page.get_by_role("button", name="Create task").click()
    await page.wait_for_url(re.compile(r"/tasks/tsk_"))
    task_id = page.url.rsplit("/", 1)[1]
    async with console.rest() as rest:
        saved = (await rest.get(f"/v1/tasks/{task_id}")).json()
    assert saved["response_schema"] == NESTED_SCHEMA
    assert saved["variables"] == ["text"]

    # Run it in the playground and see the answer as fields and as JSON.
    await page.get_by_role("link", name="Run it").click()
    await expect(page.get_by_label("Task", exact=True)).to_have_value(task_id)
    await page.get_by_label("text", exact=True).fill("Two apples and a pear, delivered late.")
    await page.get_by_role("button", name="Run", exact=True).click()
    result = page.get_by_role("region", name="Run result")
    await expect(result).to_have_attribute("data-status", "succeeded", timeout=30_000)
    answer = result.get_by_role("region", name="Answer")
    for field in ("sentiment", "summary", "author", "items"):
        await expect(answer.get_by_text(field, exact=True).first).to_be_visible()
    raw = json.loads(await result.get_by_label("Raw answer").inner_text())
    assert raw["sentiment"] in ("positive", "negative", "neutral")
    assert isinstance(raw["items"], list) and raw["items"]
    await expect(answer).to_contain_text(raw["sentiment"])
    await screenshot(page, "06-playground-answer")

    await go(page, "Runs")
    runs = page.get_by_role("table", name="Runs")
    await expect(runs.get_by_role("row").filter(has_text="succeeded")).to_have_count(1)
    await page.get_by_label("Status").select_option("failed")
    await expect(page.get_by_text("No runs match.")).to_be_visible()
    await page.get_by_label("Status").select_option("succeeded")
    await expect(runs.get_by_role("row").filter(has_text="succeeded")).to_have_count(1)
    await screenshot(page, "07-runs")


async def test_a_breaking_change_warns_and_versions_can_be_compared(console, page):
    async with console.rest() as rest:
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
            "required": ["label"],
        }
        created = await rest.post("/v1/tasks", json={"name": "classify", "response_schema": schema})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
    await sign_in(page, console)
    await page.goto(f"{console.url}/tasks/{task_id}")
    score = card(page, "score")
    await score.get_by_label("Type", exact=True).first.select_option("integer")
    await page.get_by_role("button", name="Remove label").click()
    await page.get_by_role("button", name="Save new version").click()

    warning = page.get_by_role("alertdialog", name="This change can break existing consumers")
    await expect(warning).to_contain_text('property "label" removed')
    await expect(warning).to_contain_text("type narrowed from number to integer")
    await screenshot(page, "08-breaking-change")
    await warning.get_by_role("button", name="Save anyway").click()
    await expect(page.get_by_role("status").filter(has_text="Saved as version 2")).to_be_visible()

    history = page.get_by_role("region", name="Version history")
    await expect(history.get_by_role("table", name="Versions").get_by_role("row")).to_have_count(3)
    diff = history.get_by_role("figure")
    await expect(diff).to_contain_text('"label"')
    await expect(diff.locator("td.del")).not_to_have_count(0)
    await screenshot(page, "09-version-diff")


async def test_a_provider_changed_through_the_api_updates_the_console_without_a_reload(console, page):
    async with console.rest() as rest:
        provider = await create_test_provider(rest, "live-one")
        await sign_in(page, console)
        await go(page, "Providers")
        await expect(page.get_by_role("article", name="Provider live-one")).to_be_visible()
        await page.evaluate("window.__sameDocument = true")

        changed = await rest.patch(f"/v1/providers/{provider['id']}", json={"name": "renamed-live"})
        assert changed.status_code == 200, changed.text
        started = time.monotonic()
        await expect(page.get_by_role("article", name="Provider renamed-live")).to_be_visible(timeout=1_000)
        elapsed = time.monotonic() - started

        await go(page, "Dashboard")
        dashboard_list = page.get_by_role("list", name="Providers")
        await expect(dashboard_list).to_contain_text("renamed-live")
        deleted = await rest.delete(f"/v1/providers/{provider['id']}")
        assert deleted.status_code == 200, deleted.text
        await expect(dashboard_list.get_by_text("renamed-live")).to_have_count(0, timeout=1_000)

    assert await page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert elapsed < 1.0
    await screenshot(page, "10-dashboard-live")


async def create_viewer_key(console: Console) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env["DATA_DIR"] = str(console.data_dir)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "libs.cli.main", "keys", "create", "--name", "v", "--role", "viewer", "--json"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    created = json.loads(out.decode().strip().splitlines()[-1])
    assert created["role"] == "viewer"
    key: str = created["key"]
    return key


EDITING = re.compile(
    r"^(\+ )?(new|edit|delete|validate|run|save|create|import|add|remove|replace|discard|try it|open the)\b",
    re.IGNORECASE,
)


async def assert_no_editing_controls(page: Page) -> None:
    for controls in (page.get_by_role("button"), page.get_by_role("link")):
        for name in await controls.all_inner_texts():
            assert not EDITING.match(name.strip()), f"a viewer sees {name!r} on {page.url}"
    assert await page.get_by_role("button").all_inner_texts() == ["Sign out"], page.url


async def test_a_viewer_key_gets_a_read_only_console(console, page):
    viewer = await create_viewer_key(console)
    async with console.rest() as rest:
        provider = await create_test_provider(rest, "seen-by-viewer")
        agent = await rest.post(
            "/v1/agents", json={"name": "watched", "provider_id": provider["id"], "model": "test"}
        )
        assert agent.status_code == 201, agent.text
        task = await rest.post(
            "/v1/tasks",
            json={"name": "watched-task", "response_schema": NESTED_SCHEMA, "prompt_template": "{text}"},
        )
        assert task.status_code == 201, task.text

    await sign_in(page, console, viewer)
    await expect(page.get_by_text("(read-only)")).to_be_visible()
    navigation = page.get_by_role("navigation", name="Main")
    await expect(navigation.get_by_role("link", name="Playground")).to_have_count(0)
    await expect(page.get_by_role("list", name="Providers")).to_contain_text("seen-by-viewer")
    await assert_no_editing_controls(page)
    await screenshot(page, "11-viewer-dashboard")

    for path, heading in (
        ("/providers", "Providers"),
        (f"/providers/{provider['id']}", "seen-by-viewer"),
        (f"/agents/{agent.json()['id']}", "watched"),
        ("/runs", "Runs"),
        (f"/tasks/{task.json()['id']}", "watched-task"),
    ):
        await page.goto(console.url + path)
        await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        await expect(page.get_by_test_id("connection")).to_have_text("Live")
        await assert_no_editing_controls(page)
    # The task (last above): its schema shown as read-only cards and as JSON.
    await expect(card(page, "items")).to_be_visible()
    assert json.loads(await page.get_by_label("JSON Schema preview").inner_text()) == NESTED_SCHEMA
    await screenshot(page, "12-viewer-task")
