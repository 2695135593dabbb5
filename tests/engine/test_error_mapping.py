"""redis-py errors as leaseq reports them (leaseq.scripts.translate): refusals that ran nothing
and may be retried are connection errors, never script errors."""

from __future__ import annotations

import pytest
from redis import exceptions as rex

from leaseq import errors
from leaseq.scripts import translate


@pytest.mark.parametrize("exc", [
    rex.ConnectionError("Connection closed by server."),
    rex.TimeoutError("Timeout reading from socket"),
    rex.BusyLoadingError("Redis is loading the dataset in memory"),
    rex.ClusterDownError("The cluster is down"),
    rex.MasterDownError("MASTERDOWN Link with MASTER is down"),
    rex.TryAgainError("Multiple keys request during rehashing of slot"),
    rex.ReadOnlyError("You can't write against a read only replica."),
])
def test_transient_refusals_are_connection_errors(exc: Exception) -> None:
    mapped = translate(exc)
    assert isinstance(mapped, errors.LeaseqConnectionError), mapped


def test_script_codes_and_acl_refusals_keep_their_meaning() -> None:
    assert isinstance(translate(rex.ResponseError("LEASEQ CORRUPT bad record for item a")),
                      errors.ScriptError)
    assert isinstance(translate(rex.NoPermissionError("NOPERM no permissions")),
                      errors.PermissionDenied)
    plain = ValueError("not a redis error")
    assert translate(plain) is plain
