"""The ``leaseq`` commands against a real valkey (click's CliRunner), and their error exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from leaseq import Queue, State
from leaseq.cli import cli
from leaseq.server import ServerProcess


@pytest.fixture
def run(valkey_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("LEASEQ_URL", raising=False)

    def invoke(*args: str, input: str | bytes | None = None, url: bool = True) -> Result:
        argv = [*args, "--url", valkey_server.url] if url else list(args)
        return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def q(valkey_server: ServerProcess, queue_name: str) -> Any:
    with Queue(queue_name, url=valkey_server.url) as queue:
        yield queue


def js(result: Result) -> Any:
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_add_from_argument_file_stdin_and_lines(run: Any, q: Queue, tmp_path: Path) -> None:
    r = run("add", q.name, '{"to": "a@example.com"}', "--id", "a1", "--priority", "3")
    assert r.exit_code == 0 and r.stdout.strip() == "a1"
    assert q.peek(1)[0].data == {"to": "a@example.com"} and q.peek(1)[0].priority == 3
    again = run("add", q.name, "1", "--id", "a1")
    assert again.exit_code == 0 and "not added" in again.stderr and "pending" in again.stderr
    f = tmp_path / "payload.bin"
    f.write_bytes(b"\x00raw\xff")
    assert run("add", q.name, "--file", str(f), "--raw", "--id", "f1").exit_code == 0
    assert q.state("f1").state is State.PENDING
    new = run("add", q.name, "--delay", "60", input='[1, 2, 3]\n').stdout.strip()
    assert q.state(new).state is State.DELAYED
    r = run("add", q.name, "--lines", input='{"n": 1}\n\n{"n": 2}\n3\n')
    assert r.exit_code == 0 and "added 3 of 3" in r.stdout
    datas = [p.data for p in q.peek(10)]
    assert datas[:2] == [{"to": "a@example.com"}, b"\x00raw\xff"] and 3 in datas


def test_add_refuses_bad_json_and_bad_values(run: Any, q: Queue) -> None:
    one_line_error(run("add", q.name, "{not json"), "bad JSON")
    one_line_error(run("add", q.name, "--lines", input='{"ok": 1}\n{bad\n'), "line 2")
    one_line_error(run("add", q.name, "1", "--priority", "5000"), "priority")
    one_line_error(run("add", q.name, "1", "--delay", "-1"), "delay")
    assert q.stats().pending == 0
    assert run("add", q.name, "1", "--file", "-").exit_code == 2  # usage error


def test_stats_one_all_and_watch(run: Any, q: Queue) -> None:
    q.add_many(range(5))
    q.lease()
    s = js(run("stats", q.name, "--json"))
    assert (s["queue"], s["pending"], s["leased"], s["counters"]["added"]) == (q.name, 4, 1, 5)
    names = [row["queue"] for row in js(run("stats", "--json"))]
    assert q.name in names
    table = run("stats", q.name)
    assert table.exit_code == 0 and "pending" in table.stdout and q.name in table.stdout
    lines = run("stats", q.name, "--watch", "--count", "2", "--interval", "0.1", "--json")
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(rows) == 2 and "rates" in rows[1]["queues"][0]
    live = run("stats", "--watch", "--count", "1", "--interval", "0.1")
    assert live.exit_code == 0 and "all queues at" in live.stdout


def test_stats_of_all_queues_shows_an_unreadable_queue_and_goes_on(
        run: Any, q: Queue, valkey_server: ServerProcess, queue_name: str) -> None:
    q.add("x")
    broken = Queue(f"{queue_name}-broken", url=valkey_server.url)
    broken.add("y")
    raw = valkey_server.client()
    raw.delete(broken.config.keys.pending)
    raw.set(broken.config.keys.pending, "not a zset")  # stats of this queue now fails
    rows = {r["queue"]: r for r in js(run("stats", "--json"))}
    assert rows[q.name]["pending"] == 1
    assert "WRONGTYPE" in rows[broken.name]["error"]
    table = run("stats")
    assert table.exit_code == 0 and "WRONGTYPE" in table.stdout  # under the table
    assert run("stats", broken.name).exit_code != 0  # a named queue still fails loudly
    raw.delete(broken.config.keys.pending)
    broken.purge()
    broken.close()
    raw.close()


def test_peek_state_and_sweep(run: Any, q: Queue) -> None:
    q.add({"a": 1}, id="p1")
    q.add("later", id="d1", delay=30)
    rows = js(run("peek", q.name, "--json"))
    assert [(r["id"], r["data"]) for r in rows] == [("p1", {"a": 1})]
    delayed = js(run("peek", q.name, "--which", "delayed", "--json"))
    assert delayed[0]["id"] == "d1" and delayed[0]["when"].startswith("in ")
    assert "p1" in run("peek", q.name).stdout
    st = js(run("state", q.name, "d1", "--json"))
    assert st["state"] == "delayed" and st["due_ms"] > st["now_ms"]
    assert "delayed" in run("state", q.name, "d1").stdout
    assert js(run("state", q.name, "nope", "--json"))["state"] == "unknown"
    assert js(run("sweep", q.name, "--json")) == {"promoted": 0, "reclaimed": 0}


def test_dead_list_requeue_purge(run: Any, valkey_server: ServerProcess,
                                 queue_name: str) -> None:
    with Queue(queue_name, url=valkey_server.url, max_attempts=1) as q:
        for i in range(3):
            q.add(i, id=f"x{i}")
            q.fail(q.lease(block=False), error=f"boom {i}")  # type: ignore[arg-type]
        listed = js(run("dead", "list", q.name, "--json"))
        assert listed["total"] == 3 and listed["items"][0]["last_error"] == "boom 0"
        assert "boom 1" in run("dead", "list", q.name).stdout
        assert "requeued 1" in run("dead", "requeue", q.name, "x0").stdout
        assert q.state("x0").state is State.PENDING
        aborted = run("dead", "purge", q.name, input="n\n")
        assert aborted.exit_code == 1 and q.stats().dead == 2
        assert "deleted 2" in run("dead", "purge", q.name, input="y\n").stdout
        assert q.stats().dead == 0


def test_purge_asks_unless_yes(run: Any, q: Queue) -> None:
    q.add_many(range(4))
    assert run("purge", q.name, input="n\n").exit_code == 1
    assert q.stats().pending == 4
    assert "deleted 4" in run("purge", q.name, "--yes").stdout
    assert q.stats().pending == 0


def test_unknown_queue_bad_url_and_server_down(run: Any, queue_name: str) -> None:
    for cmd in (("stats", queue_name), ("peek", queue_name), ("state", queue_name, "i"),
                ("dead", "list", queue_name), ("purge", queue_name, "--yes")):
        one_line_error(run(*cmd), "unknown queue")
    one_line_error(run("stats", "--url", "notaurl://x", url=False), "notaurl")
    down = run("stats", "--url", "redis://127.0.0.1:1/0", url=False)
    one_line_error(down, "cannot reach the server")
    one_line_error(run("add", queue_name, "1", "--url", "redis://:secret@127.0.0.1:1/0",
                       url=False), "cannot reach")
    assert "secret" not in run("stats", "--url", "redis://:secret@127.0.0.1:1", url=False).stderr
    one_line_error(run("worker", "no_such_mod_xyz:f", "--queue", "q"), "no_such_mod_xyz")


def test_server_start_status_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASEQ_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("LEASEQ_URL", raising=False)
    runner = CliRunner()
    try:
        stopped = runner.invoke(cli, ["server", "status", "--json"])
        assert stopped.exit_code == 3 and json.loads(stopped.stdout)["running"] is False
        started = runner.invoke(cli, ["server", "start", "--json"])
        info = json.loads(started.stdout)
        assert started.exit_code == 0 and info["running"]
        password = (tmp_path / "state" / "password").read_text().strip()
        assert password not in started.stdout
        status = runner.invoke(cli, ["server", "status"])
        assert status.exit_code == 0 and "running" in status.stdout
        added = runner.invoke(cli, ["add", "emb", "42"])  # no URL: the embedded server
        assert added.exit_code == 0, added.output
        assert json.loads(runner.invoke(cli, ["stats", "emb", "--json"]).stdout)["pending"] == 1
        assert "stopped" in runner.invoke(cli, ["server", "stop"]).stdout
        assert runner.invoke(cli, ["server", "status"]).exit_code == 3
    finally:
        runner.invoke(cli, ["server", "stop"])


def test_items_with_headers_show_their_data_and_headers(run: Any, q: Queue) -> None:
    q.add({"to": "h@example.com"}, id="h1", headers={"traceparent": "00-ab-cd-01"})
    rows = js(run("peek", q.name, "--json"))
    assert rows[0]["data"] == {"to": "h@example.com"} and rows[0]["undecodable"] is None
    assert rows[0]["headers"] == {"traceparent": "00-ab-cd-01"}
    st = js(run("state", q.name, "h1", "--json"))
    assert st["headers"] == {"traceparent": "00-ab-cd-01"}
    assert st["payload"] == {"base64": "SnsidG8iOiJoQGV4YW1wbGUuY29tIn0="}  # J + the JSON
    text = run("state", q.name, "h1")
    assert "header traceparent" in text.stdout and "00-ab-cd-01" in text.stdout
    Queue(q.name, q.client, max_attempts=1).fail(q.lease(block=False), error="boom")
    dead = js(run("dead", "list", q.name, "--json"))
    assert dead["items"][0]["data"] == {"to": "h@example.com"}
    assert dead["items"][0]["headers"] == {"traceparent": "00-ab-cd-01"}
    assert "h@example.com" in run("dead", "list", q.name).stdout
