"""Prometheus metrics against real servers: scraped over HTTP (or through the ASGI app), parsed
with prometheus_client's parser, compared with the queues' real state after a known workload;
worker histograms counted per outcome; ``leaseq worker --metrics-port``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

import leaseq
from leaseq import Lease, Queue
from leaseq import metrics as M
from leaseq.keys import QueueKeys
from leaseq.server import ServerProcess
from leaseq.worker import JobResult, Outcome, Retry, Worker

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GAUGES = ("pending", "delayed", "leased", "dead", "delayed_due", "leases_expired")
COUNTERS = {"added": "added", "leased": "leased", "completed": "completed",
            "failed": "failed", "retried": "retried", "expired": "expired",
            "dead": "dead_lettered", "requeued": "requeued", "removed": "removed",
            "purged": "purged", "dead_purged": "dead_purged"}


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return parse(resp.read().decode("utf-8"))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_workload(client: Any, name: str) -> tuple[Queue, Queue]:
    """Queue ``name``: 12 added (2 delayed), 6 leased, 3 completed, 2 retried (one at once,
    one in an hour), 1 still leased. Queue ``name-dead``: 3 added, leased, dead-lettered."""
    q = Queue(name, client, max_attempts=2)
    q.add_many({"n": i} for i in range(10))
    for i in range(2):
        q.add({"later": i}, delay=3600)
    leases = q.lease_many(6, block=False)
    assert len(leases) == 6
    assert q.complete_many(leases[:3]) == [True] * 3
    assert q.fail(leases[3], error="boom", retry_in=0)
    assert q.fail(leases[4], error="boom", retry_in=3600)
    dq = Queue(f"{name}-dead", client, max_attempts=1)
    dq.add_many(["x", "y", "z"])
    for lease in dq.lease_many(3, block=False):
        dq.fail(lease, error="fatal")
    return q, dq


def expect_matches_stats(samples: Samples, q: Queue) -> None:
    s = q.stats()
    for g in GAUGES:
        assert value(samples, f"leaseq_queue_{g}", queue=q.name) == getattr(s, g), g
    for key, metric in COUNTERS.items():
        assert value(samples, f"leaseq_items_{metric}_total", queue=q.name) == s.counter(key)


@pytest.fixture
def uninstrument() -> Iterator[None]:
    yield
    M.instrument(producer=True, worker=True)()  # turn everything off again


def test_scrape_over_http_matches_the_queues_state(valkey_server: ServerProcess,
                                                   queue_name: str) -> None:
    q, dq = run_workload(valkey_server.client(), queue_name)
    port = M.serve(0, url=valkey_server.url, instrument_process=False)
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    # the known workload, by hand
    for metric, want in (("leaseq_queue_pending", 5), ("leaseq_queue_delayed", 3),
                         ("leaseq_queue_leased", 1), ("leaseq_queue_dead", 0),
                         ("leaseq_items_added_total", 12), ("leaseq_items_leased_total", 6),
                         ("leaseq_items_completed_total", 3), ("leaseq_items_failed_total", 2),
                         ("leaseq_items_retried_total", 2),
                         ("leaseq_items_dead_lettered_total", 0)):
        assert value(samples, metric, queue=q.name) == want, metric
    for metric, want in (("leaseq_queue_dead", 3), ("leaseq_queue_pending", 0),
                         ("leaseq_items_dead_lettered_total", 3),
                         ("leaseq_items_failed_total", 3)):
        assert value(samples, metric, queue=dq.name) == want, metric
    # and every exposed figure equals what leaseq's own stats say
    expect_matches_stats(samples, q)
    expect_matches_stats(samples, dq)


def asgi_get(app: Any, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await app({"type": "http", "method": method, "path": "/", "headers": []},
                  receive, send)

    asyncio.run(call())
    start, body = sent[0], sent[1]
    return start["status"], dict(start["headers"]), body["body"]


@pytest.mark.parametrize("server", ["valkey", "cluster"], indirect=True)
def test_asgi_app_with_sync_and_async_clients(server: Any, queue_name: str) -> None:
    q, dq = run_workload(server.client(), queue_name)
    for client in (server.client(), None):
        if client is None:  # an asyncio client, made on the loop that uses it
            status, headers, body = asyncio_scrape(server)
        else:
            status, headers, body = asgi_get(M.asgi_app(client))
        assert status == 200 and headers[b"content-type"].startswith(b"text/plain")
        samples = parse(body.decode())
        expect_matches_stats(samples, q)
        expect_matches_stats(samples, dq)
    status, headers, body = asgi_get(M.asgi_app(server.client()), "POST")
    assert status == 405 and headers[b"allow"] == b"GET, HEAD"
    status, _, body = asgi_get(M.asgi_app(server.client()), "HEAD")
    assert status == 200 and body == b""


def asyncio_scrape(server: Any) -> tuple[int, dict[bytes, bytes], bytes]:
    result: list[Any] = []

    async def main() -> None:
        client = server.async_client()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await M.asgi_app(client)({"type": "http", "method": "GET"}, receive, send)
        await client.aclose()
        result.append((sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]))

    asyncio.run(main())
    return result[0]  # type: ignore[no-any-return]


def test_scrape_after_script_flush_and_when_the_server_is_down(valkey_server: ServerProcess,
                                                               queue_name: str) -> None:
    q, _ = run_workload(valkey_server.client(), queue_name)
    client = valkey_server.client()
    client.script_flush()  # the pipelined EVALSHA meets NOSCRIPT and falls back
    status, _, body = asgi_get(M.asgi_app(client))
    assert status == 200
    expect_matches_stats(parse(body.decode()), q)
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    status, _, body = asgi_get(M.asgi_app(down))
    assert status == 503 and b"unavailable" in body
    with pytest.raises(Exception, match=r"Connection refused|connect"):
        M.read_stats(down)
    assert asyncio.run(_aread_none(valkey_server)) == []


@pytest.mark.parametrize("server", ["valkey", "cluster"], indirect=True)
def test_a_corrupted_queue_is_reported_down_and_the_others_still_read(
        server: Any, queue_name: str) -> None:
    q, dq = run_workload(server.client(), queue_name)
    broken = Queue(f"{queue_name}-broken", server.client())
    broken.add("x")
    server.client().set(QueueKeys.of(broken.name).pending, "not a zset")
    try:
        check_broken_queue(server, q, dq, broken)
    finally:  # other tests list every queue of the shared server
        server.client().delete(*QueueKeys.of(broken.name).all_fixed)


def check_broken_queue(server: Any, q: Queue, dq: Queue, broken: Queue) -> None:
    for client in (server.client(), None):
        if client is None:
            status, _, body = asyncio_scrape(server)
        else:
            status, _, body = asgi_get(M.asgi_app(client))
        assert status == 200
        samples = parse(body.decode())
        assert value(samples, "leaseq_queue_up", queue=broken.name) == 0
        assert value(samples, "leaseq_queue_pending", queue=broken.name) is None
        assert value(samples, "leaseq_queue_up", queue=q.name) == 1
        expect_matches_stats(samples, q)
        expect_matches_stats(samples, dq)
    with pytest.raises(leaseq.ScriptError, match="WRONGTYPE"):
        M.read_stats(server.client(), [q.name, broken.name])
    stats, failed = M.scrape(server.client(), [q.name, broken.name])
    assert [s.queue for s in stats] == [q.name]
    assert [u.queue for u in failed] == [broken.name]


async def _aread_none(server: ServerProcess) -> list[Any]:
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        return await M.aread_stats(client, [])
    finally:
        await client.aclose()


def test_worker_histograms_count_jobs_per_outcome(valkey_server: ServerProcess,
                                                  queue_name: str, arun: Any,
                                                  uninstrument: None) -> None:
    M.instrument()
    with Queue(queue_name, url=valkey_server.url) as q:
        q.add_many({"n": i} for i in range(20))
        q.add_many([{"fail": True}] * 3 + [{"retry": True}] * 2)
        # an item added without the stamp: counted for duration, not for the queue wait
        q.add({"n": 99}, headers={})
        remove_stamp = q.lease(block=False)
        assert remove_stamp is not None and "leaseq-added-ms" in remove_stamp.headers
        assert q.requeue(remove_stamp)
    done: list[JobResult] = []

    async def handle(lease: Lease) -> object:
        if lease.data.get("fail"):
            raise ValueError("no")
        if lease.data.get("retry") and lease.attempt == 1:
            raise Retry(delay=0)
        return None

    w = Worker(queue_name, handle, url=valkey_server.url, concurrency=4, max_attempts=1,
               on_result=done.append)

    async def run() -> None:
        task = asyncio.create_task(w.run())
        end = time.monotonic() + 20
        while len(done) < 26 and time.monotonic() < end:
            await asyncio.sleep(0.02)
        w.stop()
        await task

    arun(run())
    outcomes: dict[str, int] = {}
    for r in done:
        outcomes[str(r.outcome)] = outcomes.get(str(r.outcome), 0) + 1
    assert outcomes == {"completed": 21, "dead": 5}
    samples = parse(_render(valkey_server, queue_name))
    for outcome, n in outcomes.items():
        assert value(samples, "leaseq_job_duration_seconds_count", queue=queue_name,
                     outcome=outcome) == n
        assert value(samples, "leaseq_job_duration_seconds_bucket", queue=queue_name,
                     outcome=outcome, le="+Inf") == n
    # every item was first leased once with the producer's stamp (the requeued one too:
    # a requeue does not count an attempt, so its second lease is a first attempt again)
    waits = value(samples, "leaseq_queue_wait_seconds_count", queue=queue_name)
    assert waits == 26
    total = value(samples, "leaseq_queue_wait_seconds_sum", queue=queue_name)
    assert total is not None and total >= 0
    assert value(samples, "leaseq_items_completed_total", queue=queue_name) == 21


def _render(server: ServerProcess, name: str) -> str:
    from prometheus_client import generate_latest

    return generate_latest(M.registry(url=server.url, queues=[name])).decode()


def free_ports(n: int) -> int:
    """A port p with p .. p + n - 1 free right now."""
    for _ in range(50):
        base = free_port()
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no run of free ports")


@pytest.mark.parametrize("processes", [None, 2])
def test_worker_command_serves_metrics(valkey_server: ServerProcess, queue_name: str,
                                       tmp_path: Path, processes: int | None) -> None:
    with Queue(queue_name, url=valkey_server.url) as q:
        q.add_many({"n": i} for i in range(30))
        q.add_many([{"fail": True, "n": i} for i in range(4)])
        port = free_ports(processes or 1)
        urls = [f"http://127.0.0.1:{port + i}/metrics" for i in range(processes or 1)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
        env.pop("LEASEQ_URL", None)
        log = (tmp_path / "worker.log").open("w")
        more = ["--processes", str(processes)] if processes else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "leaseq.cli", "worker", "metrics.jobs:flaky", "--queue",
             q.name, "--url", valkey_server.url, "--max-attempts", "1", "-c", "4",
             "--metrics-port", str(port), *more], cwd=ROOT, env=env, stdout=log, stderr=log)

        def jobs(outcome: str) -> float:
            # the worker processes' histograms, summed over their endpoints
            return sum(value(s, "leaseq_job_duration_seconds_count", queue=q.name,
                             outcome=outcome) or 0 for s in per_port)

        try:
            per_port: list[Samples] = []
            end = time.monotonic() + 30
            while time.monotonic() < end:
                try:
                    per_port = [scrape(u) for u in urls]
                except OSError:
                    per_port = []
                if jobs("completed") + jobs("dead") == 34:
                    break
                time.sleep(0.1)
            assert jobs("completed") == 30, (tmp_path / "worker.log").read_text()
            assert jobs("dead") == 4
            for url in urls:
                samples = scrape(url)
                assert value(samples, "leaseq_items_dead_lettered_total", queue=q.name) == 4
                expect_matches_stats(samples, q)
                # only the worker's own queue is exposed
                assert {dict(k[1]).get("queue") for k in samples
                        if k[0] == "leaseq_queue_pending"} == {q.name}
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(40) == 0
            log.close()


def test_worker_command_needs_a_free_metrics_port_range() -> None:
    from click.testing import CliRunner

    from leaseq.cli import cli

    r = CliRunner().invoke(cli, ["worker", "json:loads", "--queue", "q", "--processes", "2",
                                 "--metrics-port", "0", "--url", "redis://127.0.0.1:1"])
    assert r.exit_code == 2 and "cannot be combined" in r.output


def test_grafana_dashboard_uses_only_exposed_metric_names(valkey_server: ServerProcess,
                                                          queue_name: str,
                                                          uninstrument: None) -> None:
    import json
    import re

    M.instrument()
    with Queue(queue_name, url=valkey_server.url) as q:
        q.add("x")
        lease = q.lease(block=False)
        assert lease is not None
        with M.worker_metrics().job_hook(lease) as timer:
            pass
        timer.settled(JobResult(lease, Outcome.COMPLETED, None, 0.0))
    exposed = {name for name, _ in parse(_render(valkey_server, queue_name))}
    board = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    used = {name for panel in board["panels"] for t in panel["targets"]
            for name in re.findall(r"\bleaseq_[a-z_]+", t["expr"])}
    used |= set(re.findall(r"\bleaseq_[a-z_]+",
                           json.dumps(board["templating"])))
    assert used and used <= exposed, used - exposed
    # every exposed family appears on the board, except the rarely useful ones
    families_used = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in used}
    families_exposed = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in exposed}
    rare = {f"leaseq_items_{n}_total" for n in ("leased", "requeued", "removed", "purged",
                                                 "dead_purged")} | {
        "leaseq_queue_leases_expired", "leaseq_queue_up"}
    assert families_exposed - families_used == rare
