"""No pickle anywhere, and reading a payload never executes code.

* The package imports no code-executing deserializer (pickle, marshal, shelve, dill,
  cloudpickle, jsonpickle, yaml) and calls no eval / exec.
* A pickle crafted to create a file when unpickled, stored as raw bytes, as a "serialized"
  payload and with an unknown tag, is read back through every face that decodes payloads
  (lease, peek, dead letters, state, the CLI): bytes come back as bytes, the others raise
  SerializationError or are shown undecoded, and the file is never created.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import leaseq
from leaseq.cli import cli
from leaseq.keys import QueueKeys
from leaseq.protocol import split_item

PACKAGE = Path(leaseq.__file__).resolve().parent
BANNED_MODULES = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle",
                  "jsonpickle", "yaml"}
BANNED_CALLS = {"eval", "exec"}


def test_the_package_has_no_code_executing_deserializer() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n.split(".")[0] in BANNED_MODULES for n in names):
                found.append(f"{path.relative_to(PACKAGE)}:{line} imports {names}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in BANNED_CALLS):
                found.append(f"{path.relative_to(PACKAGE)}:{line} calls {node.func.id}")
    assert found == []


class Trap:
    """Unpickling this creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_a_stored_pickle_is_never_unpickled(server: Any, queue_name: str,
                                            tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Trap(marker))
    raw = server.client()
    q = leaseq.Queue(queue_name, raw, max_attempts=1)
    q.add(blob, id="as-bytes")
    q.add("placeholder", id="as-json")
    q.add("placeholder", id="bad-tag")
    items = QueueKeys.of(queue_name).items

    def store(item_id: str, payload: bytes) -> None:  # overwrite the stored payload only
        inc, prio, seq, _ = split_item(raw.hget(items, item_id))
        raw.hset(items, item_id, f"{inc}:{prio}:{seq}:".encode() + payload)

    store("as-json", b"J" + blob)  # a "serialized" payload that is really a pickle
    store("bad-tag", b"P" + blob)

    peeked = {p.id: p for p in q.peek(10)}
    assert peeked["as-bytes"].data == blob
    leases = {x.id: x for x in q.lease_many(3, block=False)}
    assert leases["as-bytes"].data == blob
    for item_id in ("as-json", "bad-tag"):
        with pytest.raises(leaseq.SerializationError):
            _ = leases[item_id].data
        with pytest.raises(leaseq.SerializationError):
            _ = peeked[item_id].data
        assert q.state(item_id).payload is not None  # stored form, undecoded
        q.fail(leases[item_id], error="undecodable")  # dead (max_attempts=1)
    for row in q.dead()[1]:
        with pytest.raises(leaseq.SerializationError):
            _ = row.data
    for args in (["peek", queue_name, "--which", "dead"], ["peek", queue_name, "--json"],
                 ["state", queue_name, "as-json"], ["state", queue_name, "bad-tag", "--json"],
                 ["dead", "list", queue_name]):
        result = CliRunner().invoke(cli, [*args, "--url", server.url])
        assert result.exit_code == 0, (args, result.output)
    assert not marker.exists()
    q.purge()
