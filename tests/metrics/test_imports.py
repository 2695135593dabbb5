"""The extras stay optional: the core, the asyncio queue, the worker and the CLI import neither
``leaseq.metrics``/``prometheus_client`` nor ``leaseq.otel``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_no_extra() -> None:
    code = ("import sys, leaseq, leaseq.aio, leaseq.worker, leaseq.cli, leaseq.hooks; "
            "print(sorted(m for m in sys.modules if m.startswith(('leaseq.metrics', "
            "'leaseq.otel', 'prometheus_client'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
