"""Virtual environments of the peer benchmark (standard library only: runs before any venv).

One venv per group of peers whose redis-py pins agree, under ``bench/.venvs/<group>`` (git
ignored). A venv is rebuilt when its spec or interpreter changes (a stamp file holds both).
BullMQ is installed from npm into ``bench/peers/bullmq/node_modules`` when ``node`` exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENVS = ROOT / "bench" / ".venvs"
BULLMQ_DIR = HERE / "bullmq"


@dataclass(frozen=True)
class Group:
    """A venv: what pip installs into it (``editable`` installs the leaseq repo with -e)."""

    name: str
    packages: tuple[str, ...]
    editable: bool = False


# Pins: the versions the published figures were measured with. Groups exist because of redis-py
# pins: arq wants redis<6, saq[redis] wants redis<8, taskiq-redis wants redis>=8.
GROUPS: dict[str, Group] = {
    "main": Group(
        "main",
        (
            "hiredis",
            "matplotlib",
            "py-spy",
            "redis-work-queue==0.1.5",
            "torrelque==0.9.0",
            "rq==3.0.0",
            "streaq==7.2.0",
            "taskiq==0.13.0",
            "taskiq-redis==1.2.4",
        ),
        editable=True,
    ),
    "saq": Group("saq", ("saq[redis,hiredis]==0.26.4", "typing_extensions")),
    "arq": Group("arq", ("arq==0.28.0", "hiredis")),
}


def default_python() -> str:
    """Debian's python3 when present (a PGO/LTO build, faster than a plain source build), else
    the running interpreter. Every venv uses the same interpreter, so peers compare fairly."""
    for cand in ("/usr/bin/python3",):
        if os.access(cand, os.X_OK):
            return cand
    return sys.executable


def venv_python(group: str) -> Path:
    return VENVS / group / "bin" / "python"


def _stamp(group: Group, python: str) -> str:
    real = os.path.realpath(python)
    spec = {"packages": group.packages, "editable": group.editable, "python": real}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def ensure_venv(name: str, python: str, log=print) -> Path:  # type: ignore[no-untyped-def]
    """Create (or reuse) the venv of group ``name``; return its python."""
    group = GROUPS[name]
    path = VENVS / name
    stamp_file = path / ".bench-stamp"
    stamp = _stamp(group, python)
    fresh = stamp_file.exists() and stamp_file.read_text().strip() == stamp
    if fresh and venv_python(name).exists():
        return venv_python(name)
    log(f"[setup] building venv {path} with {python} (one-off, a few minutes)")
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    args = list(group.packages)
    if group.editable:
        args += ["-e", str(ROOT)]
    subprocess.run([*pip, *args], check=True)
    stamp_file.write_text(stamp + "\n")
    return venv_python(name)


def ensure_bullmq(log=print) -> str | None:  # type: ignore[no-untyped-def]
    """npm-install BullMQ if node exists; return None when usable, else the reason it is not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node/npm not found"
    pkg = json.loads((BULLMQ_DIR / "package.json").read_text())
    wanted = pkg["dependencies"]

    def have(name: str) -> str | None:
        f = BULLMQ_DIR / "node_modules" / name / "package.json"
        return json.loads(f.read_text()).get("version") if f.exists() else None

    if all(have(name) == ver for name, ver in wanted.items()):
        return None
    log(f"[setup] npm install {wanted} into {BULLMQ_DIR}")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BULLMQ_DIR, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return f"npm install failed: {proc.stderr.strip()[-300:]}"
    return None


if __name__ == "__main__":
    py = default_python()
    for g in sys.argv[1:] or list(GROUPS):
        print(ensure_venv(g, py))
    print("bullmq:", ensure_bullmq() or "ok")
