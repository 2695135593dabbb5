"""The ACL SETUSER lines of docs/security.md, exactly as written there: the worker line is the one
the ACL tests use, and the admin line runs every CLI command over every queue while staying out
of keys that are not leaseq's."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import leaseq
from leaseq.cli import cli
from tests.security.test_acl import worker_acl

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"

pytestmark = pytest.mark.parametrize("server", ["valkey", "redis"], indirect=True)


def documented(user: str) -> list[str]:
    """The arguments of the documented ``ACL SETUSER <user> ...`` line."""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"ACL SETUSER {user} "):
            return line.split()[2:]
    raise AssertionError(f"no ACL SETUSER {user} line in {DOC}")


def test_the_documented_worker_line_is_the_tested_one(server: Any) -> None:
    doc = documented("emails-worker")
    tested = worker_acl("emails", "emails-worker", "CHANGE-ME")
    assert sorted(doc) == sorted(tested)


def test_the_documented_admin_line_runs_every_cli_command(server: Any) -> None:
    admin = server.client()
    tag = uuid.uuid4().hex[:8]
    user, password = f"leaseq-admin-{tag}", uuid.uuid4().hex
    rules = [f">{password}" if r == ">CHANGE-ME" else r for r in documented("leaseq-admin")[1:]]
    admin.execute_command("ACL", "SETUSER", user, *rules)
    names = [f"acl-docs-{tag}-a", f"acl-docs-{tag}-b"]
    for name in names:
        q = leaseq.Queue(name, admin, max_attempts=1)
        q.add({"n": 1}, id="one")
        q.add("two", id="two")
        q.fail(q.lease(block=False), error="boom")  # "one" is a dead letter
    admin.set(f"secret-{tag}", "s")
    url = f"redis://{user}:{password}@127.0.0.1:{server.backend.port}/0"
    runner = CliRunner()
    a = names[0]
    try:
        for args in (["stats"], ["stats", "--json"], ["stats", a], ["peek", a],
                     ["peek", a, "--which", "dead"], ["state", a, "two"], ["dead", "list", a],
                     ["dead", "requeue", a, "one"], ["sweep", a], ["add", a, '{"x": 1}'],
                     ["dead", "purge", a, "-y"], ["purge", a, "-y"]):
            result = runner.invoke(cli, [*args, "--url", url])
            assert result.exit_code == 0, (args, result.output)
            if args == ["stats", "--json"]:
                assert all(n in result.output for n in names)  # every queue, found by SCAN
        confined = redis.Redis(port=server.backend.port, username=user, password=password)
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.get(f"secret-{tag}")
        confined.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.delete(f"secret-{tag}")
        for name in names:
            leaseq.Queue(name, admin).purge()
