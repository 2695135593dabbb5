"""The facades on the leaseq engine, re-run while a header provider stamps every added item:
their payloads (compared, hashed, decoded by the facades) must not see the envelope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from leaseq import hooks

from . import test_aiopyrq as A
from . import test_torrelque as T

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def stamped() -> Iterator[list[int]]:
    calls = [0]

    def provider() -> dict[str, str]:
        calls[0] += 1
        return {"traceparent": TRACEPARENT}

    remove = hooks.add_header_provider(provider)
    yield calls
    remove()
    assert calls[0] > 0  # the facade's adds went through the provider


AIOPYRQ: list[Callable[..., None]] = [
    A.test_queue_fifo_ack_reject, A.test_unique_queue_refuses_waiting_and_held_values,
    A.test_delete_items_removes_every_waiting_copy,
]
TORRELQUE: list[Callable[..., None]] = [
    T.test_falsy_payloads_round_trip, T.test_release_with_and_without_result,
    T.test_requeue_task_timeout_applies_to_the_next_dequeue,
    T.test_requeue_of_a_task_dequeued_elsewhere, T.test_custom_serialiser_and_undecodable_task,
]


@pytest.mark.parametrize("case", AIOPYRQ, ids=lambda f: f.__name__)
def test_aiopyrq_with_headers(valkey_server: Any, queue_name: str, stamped: list[int],
                              case: Callable[..., None]) -> None:
    case(valkey_server, queue_name)


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
@pytest.mark.parametrize("case", TORRELQUE, ids=lambda f: f.__name__)
def test_torrelque_with_headers(server: Any, queue_name: str, stamped: list[int],
                                case: Callable[..., None]) -> None:
    case(server, queue_name)


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_torrelque_requeue_keeps_the_headers(server: Any, queue_name: str,
                                             stamped: list[int]) -> None:
    from leaseq import Queue
    from leaseq.compat.torrelque import Torrelque

    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        task_id = await q.enqueue({"x": 1})
        await q.dequeue(timeout=1)
        await q.requeue(task_id, task_timeout=5)  # rewrites the stored payload
        assert await q.dequeue(timeout=1) == (task_id, {"x": 1})

    T.run(server, body)
    with Queue(queue_name, server.client()) as plain:
        assert plain.state(task_id_of(plain)).headers == {"traceparent": TRACEPARENT}


def task_id_of(q: Any) -> str:
    (leased,) = q.peek(which="leased")
    return leased.id  # type: ignore[no-any-return]
