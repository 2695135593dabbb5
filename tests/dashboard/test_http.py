"""The dashboard over HTTP (Starlette's TestClient) against a real valkey server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import types
from html import escape
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

import leaseq
from leaseq.dashboard import UnsafeBind, check_bind, create_app, is_loopback, serve

from .conftest import csrf_of, row_cells

ROOT = Path(__file__).resolve().parents[2]


def fill(q: Any, pending: int = 7, delayed: int = 2, leased: int = 1, dead: int = 1) -> None:
    q.add_many([{"n": i} for i in range(pending + leased + dead)])
    q.add_many([leaseq.Item({"later": i}, delay=600) for i in range(delayed)])
    for lease in q.lease_many(dead):
        q.fail(lease, error="boom <b>bold</b>")
    q.lease_many(leased, lease=600)


def test_overview_shows_each_queues_counts(dash: Any, q: Any) -> None:
    fill(q)
    r = dash().get("/")
    assert r.status_code == 200
    cells = row_cells(r.text, q.name)
    assert (cells["pending"], cells["delayed"], cells["leased"], cells["dead"]) == \
        ("7", "2", "1", "1")
    assert cells["failed"] == "1"
    assert "<svg" in r.text  # the throughput chart


def test_an_unreadable_queue_is_named_and_the_others_shown(dash: Any, q: Any,
                                                            valkey_server: Any) -> None:
    fill(q)
    broken = leaseq.Queue(q.name + "-broken", url=valkey_server.url)
    broken.add("x")
    raw = valkey_server.client()
    raw.delete(broken.config.keys.pending)
    raw.set(broken.config.keys.pending, "<b>not a zset</b>")
    try:
        r = dash().get("/")
        assert r.status_code == 200
        assert row_cells(r.text, q.name)["pending"] == "7"
        assert f'data-unreadable="{broken.name}"' in r.text and "WRONGTYPE" in r.text
    finally:
        raw.delete(broken.config.keys.pending)
        broken.purge()
        broken.close()


def test_rates_and_chart_follow_the_counters(dash: Any, q: Any) -> None:
    c = dash(refresh=0.05)
    q.add_many(range(20))
    c.get("/")
    q.complete_many(q.lease_many(20))
    time.sleep(0.2)
    cells = row_cells(c.get("/").text, q.name)
    assert float(cells["completed_rate"].replace(",", "")) > 0
    assert cells["completed"] == "20"
    time.sleep(0.1)
    assert "<polyline" in c.get("/fragment").text  # three reads: two points per series


def test_queue_page_reads_windows_by_rank(dash: Any, q: Any) -> None:
    q.add_many([leaseq.Item(i, id=f"item-{i:04d}") for i in range(250)])
    c = dash()
    r = c.get("/queue", params={"q": q.name, "start": 200, "n": 20})
    ids = re.findall(r'<tr data-id="([^"]+)">', r.text)
    assert ids == [p.id for p in q.peek(20, start=200)] == [f"item-{i:04d}" for i in
                                                             range(200, 220)]
    assert "201\u2013220 of 250" in r.text
    assert "start=220" in r.text and "start=180" in r.text  # next / previous windows
    by_form = c.get("/queue", params={"q": q.name, "from": 201, "n": 20}).text
    assert re.findall(r'<tr data-id="([^"]+)">', by_form) == ids  # the field counts from 1
    r = c.get("/queue", params={"q": q.name, "start": 10_000})
    assert "nothing at 10,001 of 250" in r.text


def test_queue_tabs_show_due_time_lease_and_last_error(dash: Any, q: Any) -> None:
    fill(q)
    c = dash()
    delayed = c.get("/queue", params={"q": q.name, "which": "delayed"}).text
    assert re.search(r">in (9|10) min \d+ s<", delayed)
    leased = c.get("/queue", params={"q": q.name, "which": "leased"}).text
    token = q.peek(1, which="leased")[0].token
    assert token and f'<td class="id">{token}</td>' in leased
    assert re.search(r">(9|10) min \d+ s<", leased)  # time left of a 600 s lease
    dead = c.get("/queue", params={"q": q.name, "which": "dead"}).text
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in dead and "<b>bold" not in dead


def test_leased_tab_and_item_page_show_the_holder(dash: Any, q: Any,
                                                  valkey_server: Any) -> None:
    named = leaseq.Queue(q.name, url=valkey_server.url, holder="<b>host</b>:42")
    named.add("x", id="held")
    assert named.lease(block=False) is not None
    c = dash()
    leased = c.get("/queue", params={"q": q.name, "which": "leased"}).text
    assert '<td class="id" data-k="holder">&lt;b&gt;host&lt;/b&gt;:42</td>' in leased
    item = c.get("/item", params={"q": q.name, "id": "held"}).text
    assert '<dd id="holder">&lt;b&gt;host&lt;/b&gt;:42</dd>' in item
    named.close()


def test_item_page_escapes_payload_id_and_error(dash: Any, q: Any) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    q.add(evil, id=evil)
    q.add(b"\xff\xfe<b>\x00\x1b[31m\xe2\x80\xae", id="binary")
    c = dash()
    r = c.get("/item", params={"q": q.name, "id": evil})
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert escape(evil, quote=False) in r.text.replace("&#34;", '"')
    assert "script-src 'nonce-" in r.headers["content-security-policy"]
    r = c.get("/item", params={"q": q.name, "id": "binary"})
    payload = r.text[r.text.index('<pre id="payload">'):]
    assert payload.startswith(
        '<pre id="payload">\\xff\\xfe&lt;b&gt;\\u0000\\u001b[31m\\u202e</pre>')
    assert "(bytes, 14 bytes)" in r.text


def test_item_page_shows_state_attempts_error_and_result(dash: Any, q: Any) -> None:
    q = leaseq.Queue(q.name, q.client, max_attempts=3)
    q.add({"a": 1}, id="x")
    q.fail(q.lease(timeout=5), error="first <failure>", retry_in=0.001)
    lease = q.lease(lease=60, timeout=5)
    assert lease is not None
    c = dash()
    r = c.get("/item", params={"q": q.name, "id": "x"})
    assert '<dd class="state" id="state">leased</dd>' in r.text
    assert '<dd id="attempts">2</dd>' in r.text
    assert "first &lt;failure&gt;" in r.text and "lease deadline" in r.text
    q.complete(lease, result={"sent": "<ok>"})
    r = c.get("/item", params={"q": q.name, "id": "x"})
    assert '<dd class="state" id="state">completed</dd>' in r.text
    assert "&#34;sent&#34;: &#34;&lt;ok&gt;&#34;" in r.text
    r = c.get("/item", params={"q": q.name, "id": "never-added"})
    assert '<dd class="state" id="state">unknown</dd>' in r.text


def test_large_payload_preview_is_capped(dash: Any, q: Any) -> None:
    q.add("x" * 200_000, id="big")
    c = dash()
    r = c.get("/item", params={"q": q.name, "id": "big"})
    assert "200,002 bytes" in r.text and len(r.text) < 30_000
    r = c.get("/queue", params={"q": q.name})
    assert len(r.text) < 30_000


def test_bad_queue_name_is_a_clear_400(dash: Any) -> None:
    r = dash().get("/queue", params={"q": "a{b}"})
    assert r.status_code == 400 and "braces" in r.text


def test_actions_need_the_csrf_token(dash: Any, q: Any) -> None:
    fill(q)
    c = dash()
    dead_id = q.dead(1)[1][0].id
    form = {"op": "requeue_dead", "q": q.name, "id": dead_id}
    assert c.post("/action", data=form).status_code == 403
    assert c.post("/action", data={**form, "csrf": "0" * 64}).status_code == 403
    token = csrf_of(c.get("/queue", params={"q": q.name}).text)
    other = TestClient(c.app, base_url="http://127.0.0.1")  # another browser: other cookie
    assert other.post("/action", data={**form, "csrf": token}).status_code == 403
    bad_origin = c.post("/action", data={**form, "csrf": token},
                        headers={"origin": "http://evil.example"})
    assert bad_origin.status_code == 403
    assert q.state(dead_id).state is leaseq.State.DEAD
    r = c.post("/action", data={**form, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/queue?")
    assert q.state(dead_id).state is leaseq.State.PENDING


def test_requeue_all_remove_and_purge(dash: Any, q: Any) -> None:
    q.add_many(range(5))
    for lease in q.lease_many(3):
        q.fail(lease, error="x")
    c = dash()
    token = csrf_of(c.get("/queue", params={"q": q.name}).text)
    r = c.post("/action", data={"op": "requeue_all_dead", "q": q.name, "csrf": token})
    assert "3 dead letter(s) moved back to pending." in r.text
    assert q.stats().pending == 5
    victim = q.peek(1)[0].id
    r = c.post("/action", data={"op": "remove", "q": q.name, "id": victim, "csrf": token})
    assert "Item removed." in r.text and q.state(victim).state is leaseq.State.UNKNOWN
    r = c.post("/action", data={"op": "remove", "q": q.name, "id": victim, "csrf": token})
    assert "already gone" in r.text
    confirm_page = c.get("/purge", params={"q": q.name})
    assert "Type the queue name to confirm" in confirm_page.text
    r = c.post("/action", data={"op": "purge", "q": q.name, "csrf": token})
    assert r.status_code == 400 and "did not match" in r.text
    r = c.post("/action", data={"op": "purge", "q": q.name, "csrf": token,
                                "confirm": q.name + "x"})
    assert r.status_code == 400 and q.stats().pending == 4
    r = c.post("/action", data={"op": "purge", "q": q.name, "csrf": token, "confirm": q.name})
    assert "Queue purged: 4 item(s) deleted." in r.text and q.stats().pending == 0


def test_read_only_hides_and_refuses_actions(dash: Any, q: Any) -> None:
    fill(q)
    c = dash(read_only=True)
    for page in (c.get("/queue", params={"q": q.name, "which": "dead"}),
                 c.get("/item", params={"q": q.name, "id": q.dead(1)[1][0].id})):
        assert page.status_code == 200
        assert "/action" not in page.text and 'name="csrf"' not in page.text
        assert 'id="read-only"' in page.text
    rw = dash()
    token = csrf_of(rw.get("/queue", params={"q": q.name}).text)
    c.cookies.update(rw.cookies)
    r = c.post("/action", data={"op": "purge", "q": q.name, "csrf": token,
                                "confirm": q.name})
    assert r.status_code == 403 and "read-only" in r.text
    assert c.get("/purge", params={"q": q.name}).status_code == 403
    assert q.stats().pending == 7


def test_token_auth(dash: Any, q: Any) -> None:
    c = dash(token="s3cret-token; odd=\"chars\"")
    r = c.get("/")
    assert r.status_code == 401 and "token" in r.text
    assert c.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"authorization": 'Bearer s3cret-token; odd="chars"'}) \
        .status_code == 200
    r = c.get("/queue", params={"q": q.name, "token": 's3cret-token; odd="chars"'},
              follow_redirects=False)
    assert r.status_code == 303 and "s3cret" not in r.headers["location"]
    assert "HttpOnly" in r.headers["set-cookie"] and "s3cret" not in r.headers["set-cookie"]
    assert c.get(r.headers["location"]).status_code == 200  # the cookie now
    fresh = TestClient(c.app, base_url="http://127.0.0.1")  # no cookie
    assert fresh.get("/", params={"token": "nope"}).status_code == 401


def test_basic_auth(dash: Any) -> None:
    c = dash(basic_auth="ops:pa:ss")
    r = c.get("/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert c.get("/", auth=("ops", "wrong")).status_code == 401
    assert c.get("/", auth=("ops", "pa:ss")).status_code == 200


def test_host_header_must_be_loopback_without_credentials(dash: Any) -> None:
    assert dash(base_url="http://evil.example").get("/").status_code == 400
    assert dash(base_url="http://localhost:8765").get("/").status_code == 200
    assert dash(base_url="http://[::1]:8765").get("/").status_code == 200
    with_token = dash(base_url="http://dash.example", token="t")
    assert with_token.get("/", headers={"authorization": "Bearer t"}).status_code == 200


def test_check_bind() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(host, token=None, basic_auth=None)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(UnsafeBind, match="without credentials"):
            check_bind(host, token=None, basic_auth=None)
        check_bind(host, token="t", basic_auth=None)
        check_bind(host, token=None, basic_auth=("u", "p"))
    with pytest.raises(UnsafeBind):  # before any socket or connection is opened
        serve("redis://127.0.0.1:1", host="0.0.0.0", port=0)


def test_events_stream_the_live_part(dash: Any, q: Any) -> None:
    q.add_many(range(3))
    c = dash(refresh=0.05)
    r = c.get("/events", params={"limit": 2})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e.startswith("event: update")]
    assert len(events) == 2
    html = "\n".join(line[6:] for line in events[0].splitlines() if line.startswith("data: "))
    assert row_cells(html, q.name)["pending"] == "3"
    r = c.get("/events", params={"limit": 1, "view": "queue", "q": q.name})
    assert 'data-k="pending">3<' in r.text


def test_mounted_under_a_prefix(valkey_server: Any, q: Any) -> None:
    fill(q)
    outer = Starlette(routes=[Mount("/ops/queues", create_app(valkey_server.url))])
    with TestClient(outer, base_url="http://127.0.0.1") as c:
        r = c.get("/ops/queues/")
        assert r.status_code == 200
        assert f'href="/ops/queues/queue?q={q.name}"' in r.text
        assert 'data-live="/ops/queues/events?view=overview"' in r.text
        page = c.get("/ops/queues/queue", params={"q": q.name, "which": "dead"}).text
        assert 'action="/ops/queues/action"' in page
        r = c.post("/ops/queues/action", follow_redirects=False,
                   data={"op": "requeue_all_dead", "q": q.name, "csrf": csrf_of(page)})
        assert r.headers["location"].startswith("/ops/queues/queue?")
        assert q.stats().dead == 0


def test_metrics_hook_mounts_leaseq_metrics_asgi_app(valkey_server: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[Any] = []

    def asgi_app(client: Any) -> Any:
        got.append(client)
        return PlainTextResponse("leaseq_queue_pending 0\n")

    module = types.ModuleType("leaseq.metrics")
    module.asgi_app = asgi_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "leaseq.metrics", module)
    with TestClient(create_app(valkey_server.url, token="t"),
                    base_url="http://127.0.0.1") as c:
        assert c.get("/metrics").status_code == 401  # behind the same credentials
        r = c.get("/metrics", headers={"authorization": "Bearer t"})
        assert r.text == "leaseq_queue_pending 0\n"
    assert got == [valkey_server.url]
    monkeypatch.setitem(sys.modules, "leaseq.metrics", None)  # import fails: no route
    with TestClient(create_app(valkey_server.url), base_url="http://127.0.0.1") as c:
        assert c.get("/metrics").status_code == 404


def test_server_down_is_a_clear_503() -> None:
    from leaseq.server.process import free_port

    with TestClient(create_app(f"redis://127.0.0.1:{free_port()}"),
                    base_url="http://127.0.0.1") as c:
        r = c.get("/")
        assert r.status_code == 503 and "cannot reach the server" in r.text


def _cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leaseq.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, **kw)


def test_cli_serves_the_dashboard(valkey_server: Any, q: Any) -> None:
    import signal
    import urllib.request

    q.add_many(range(3))
    proc = subprocess.Popen([sys.executable, "-m", "leaseq.cli", "dashboard", "--url",
                             valkey_server.url, "--port", "0", "--read-only"],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        m = re.search(r"on (http://127\.0\.0\.1:\d+/) .*read-only", line)
        assert m, line
        with urllib.request.urlopen(m.group(1), timeout=20) as r:
            html = r.read().decode()
        assert row_cells(html, q.name)["pending"] == "3" and 'id="read-only"' in html
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130  # stopped cleanly by ^C, as every leaseq command


def test_cli_refuses_a_non_loopback_bind_without_credentials() -> None:
    out = _cli("dashboard", "--host", "0.0.0.0", "--port", "0", "--url", "redis://127.0.0.1:1")
    assert out.returncode == 1
    assert "refusing to serve the dashboard on '0.0.0.0' without credentials" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_without_the_extra_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['starlette'] = None; from leaseq.cli import main; "
            "sys.argv = ['leaseq', 'dashboard']; main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 1
    assert "pip install 'leaseq[dashboard]'" in out.stderr
    help_out = subprocess.run([sys.executable, "-c", code.replace("'dashboard'", "'--help'")],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert help_out.returncode == 0 and "dashboard" in help_out.stdout


def test_import_leaseq_does_not_import_the_dashboard() -> None:
    code = "import sys, leaseq; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('starlette', 'uvicorn', 'jinja2') or m.startswith('leaseq.dashboard')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


def test_on_a_cluster_with_an_asyncio_cluster_client(valkey_cluster: Any,
                                                     queue_name: str) -> None:
    sync = leaseq.Queue(queue_name, valkey_cluster.client(), max_attempts=1)
    other = leaseq.Queue(queue_name + "-b", sync.client)
    sync.add_many(range(4))
    other.add_many(range(2))
    sync.fail(sync.lease(timeout=5), error="x")
    client = valkey_cluster.async_client()  # connects lazily, on the app's event loop
    with TestClient(create_app(client), base_url="http://127.0.0.1") as c:
        page = c.get("/").text
        assert row_cells(page, queue_name)["pending"] == "3"
        assert row_cells(page, queue_name + "-b")["pending"] == "2"
        dead = c.get("/queue", params={"q": queue_name, "which": "dead"}).text
        c.post("/action", data={"op": "requeue_all_dead", "q": queue_name,
                                "csrf": csrf_of(dead)})
        c.portal.call(client.aclose)
    assert sync.stats().pending == 4
    sync.purge()
    other.purge()


def test_overview_with_hundreds_of_queues() -> None:
    """More queues than the client's pool has connections (100): reads are bounded; the
    page lists the 200 biggest and counts every queue in its totals."""
    from leaseq.server.process import ServerProcess

    with ServerProcess(kind="valkey") as server:
        client = server.client()
        for i in range(260):
            leaseq.Queue(f"q{i:03d}", client).add_many(range(1 + (i >= 200)))
        with TestClient(create_app(server.url), base_url="http://127.0.0.1") as c:
            r = c.get("/")
        assert r.status_code == 200
        assert len(re.findall(r'<tr data-queue="', r.text)) == 200
        assert "all 260 queues (60 smaller ones not listed)" in r.text
        assert 'data-k="total-pending">320<' in r.text
        assert 'data-queue="q259"' in r.text and 'data-queue="q000"' in r.text
        client.close()
