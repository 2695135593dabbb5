"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a live
uvicorn server and a real valkey server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

import leaseq


def cell(page: Any, queue: str, key: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] td[data-k="{key}"]')


def test_overview_counts_and_live_update(live: Any, q: Any, page: Any, tmp_path: Path) -> None:
    q.add_many(range(5))
    q.add({"later": 1}, delay=600)
    q.fail(q.lease(timeout=5), error="boom")
    url = live(refresh=0.3)
    page.goto(url + "/")
    assert cell(page, q.name, "pending").inner_text() == "4"
    assert cell(page, q.name, "delayed").inner_text() == "1"
    assert cell(page, q.name, "leased").inner_text() == "0"
    assert cell(page, q.name, "dead").inner_text() == "1"
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    assert (tmp_path / "overview.png").stat().st_size > 1000
    page.evaluate("window.__sameDocument = true")
    q.add_many(range(10))
    q.lease_many(3, lease=600)
    page.wait_for_function(
        "([q]) => { const row = document.querySelector(`tr[data-queue='${q}']`);"
        " return row && row.querySelector('[data-k=pending]').textContent === '11'"
        " && row.querySelector('[data-k=leased]').textContent === '3'; }", arg=[q.name])
    assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
    assert "live" in page.locator("#live-status").inner_text()
    for _ in range(3):  # traffic: the chart draws lines from the live reads
        q.complete_many(q.lease_many(3))
        page.wait_for_timeout(350)
    page.wait_for_selector("svg.chart polyline", state="attached")
    page.wait_for_function(
        "([q]) => document.querySelector(`tr[data-queue='${q}'] [data-k=completed]`)"
        ".textContent === '9'", arg=[q.name])
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(tmp_path / "overview-traffic.png"), full_page=True)


def test_requeue_a_dead_item_from_its_button(live: Any, q: Any, page: Any) -> None:
    q.add({"x": 1}, id="victim")
    q.fail(q.lease(timeout=5), error="broken")
    page.goto(live() + f"/queue?q={q.name}&which=dead")
    row = page.locator('tr[data-id="victim"]')
    assert "broken" in row.inner_text()
    row.locator("button.requeue").click()
    page.wait_for_selector("#flash")
    assert "1 dead letter(s) moved back to pending." in page.locator("#flash").inner_text()
    st = q.state("victim")
    assert st.state is leaseq.State.PENDING and st.attempts == 0


def test_purge_needs_the_confirmation(live: Any, q: Any, page: Any) -> None:
    q.add_many(range(6))
    page.goto(live() + f"/queue?q={q.name}")
    page.click("#purge-link")
    page.wait_for_selector("#confirm")
    assert q.stats().pending == 6  # opening the confirmation changes nothing
    page.click("#purge")  # nothing typed
    page.wait_for_selector("#wrong")
    assert q.stats().pending == 6
    page.fill("#confirm", q.name)
    page.click("#purge")
    page.wait_for_selector("#flash")
    assert "Queue purged: 6 item(s) deleted." in page.locator("#flash").inner_text()
    assert q.stats().pending == 0


def test_read_only_refuses_actions(live: Any, q: Any, page: Any) -> None:
    q.add({"x": 1}, id="d")
    q.fail(q.lease(timeout=5), error="e")
    url = live(read_only=True)
    page.goto(url + f"/queue?q={q.name}&which=dead")
    assert page.locator("#read-only").is_visible()
    assert page.locator("button.requeue").count() == 0
    assert page.locator("#purge-link").count() == 0
    status = page.evaluate(
        "([q]) => fetch('/action', {method: 'POST', headers: {'content-type': "
        "'application/x-www-form-urlencoded'}, body: 'op=requeue_all_dead&q=' + q})"
        ".then(r => r.status)", [q.name])
    assert status == 403
    assert page.goto(url + f"/purge?q={q.name}").status == 403
    assert q.state("d").state is leaseq.State.DEAD


def test_script_payload_is_inert(live: Any, q: Any, page: Any) -> None:
    evil = "<script>window.__pwned = 1; alert('xss')</script><img src=x onerror=\"alert(2)\">"
    q.add(evil, id="evil<script>alert(3)</script>")
    q.add(b"\xff\xfe<svg onload=alert(4)>", id="binary")
    url = live()
    page.goto(url + f"/queue?q={q.name}")
    page.goto(url + "/item?" + "q=" + q.name + "&id=evil%3Cscript%3Ealert(3)%3C%2Fscript%3E")
    assert page.locator("#payload").inner_text() == '"' + evil.replace('"', '\\"') + '"'
    assert page.locator("#item-id").inner_text() == "evil<script>alert(3)</script>"
    page.goto(url + f"/item?q={q.name}&id=binary")
    assert page.locator("#payload").inner_text() == "\\xff\\xfe<svg onload=alert(4)>"
    page.wait_for_timeout(200)  # give any injected handler its chance to run
    assert page.dialogs == []
    assert page.evaluate("window.__pwned") is None
