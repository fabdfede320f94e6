"""Two certifications at once on one worker versus one alone (issue 8: threads per process).

Run ``python -m bench.workers_bench``. A real ``plcert worker --concurrency 2 --pool prefork``
runs on a fresh ``PLCERT_DATA_DIR`` (SQLite store, filesystem broker) WITHOUT
``OMP_NUM_THREADS`` in its environment, so the thread budget under test is the worker's own
(usable cores / concurrency per pool process, ``service.threads``). One job runs alone, then two
identical jobs at once, then one alone again; job times are the store's started_at to
finished_at. The ratio (slower of the two concurrent jobs over the mean of the solo runs) was
14 before the budget (45 s against 3.1 s on the 2-core machine); it should be near 1 when the
machine has a core per job, and stay under 2.5 (``tests/worker/test_worker_concurrency.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.targets import format_table

ROOT = Path(__file__).resolve().parent.parent

SPEC: dict[str, Any] = {
    "type": "mlp",
    "input_dim": 2,
    "widths": [32, 32],
    "output_dim": 1,
    "activation": "tanh",
    "seed": 1,
}
DATA: dict[str, Any] = {
    "X": [[((i * 7 + j * 3) % 13) / 13 - 0.5 for j in range(2)] for i in range(16)],
    "y": [((i * 3) % 5) / 5 - 0.4 for i in range(16)],
}
OPTIONS: dict[str, Any] = {"budget": "fast", "validation_steps": 1000}


@dataclass(frozen=True)
class ConcurrencyResult:
    """Job seconds alone (before and after) and of two jobs run at once."""

    alone_s: tuple[float, float]
    together_s: tuple[float, float]

    @property
    def ratio(self) -> float:
        """max(together) / mean(alone)."""
        return max(self.together_s) / (sum(self.alone_s) / len(self.alone_s))


def worker_env(data_dir: Path) -> dict[str, str]:
    """This environment minus PLCERT_* and the OpenMP/MKL thread variables, on ``data_dir``."""
    drop = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLCERT_") and k not in drop}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        PLCERT_DATA_DIR=str(data_dir),
        PLCERT_LOG_JSON="false",
    )
    return env


def _run_jobs(data_dir: Path, count: int, timeout_s: float) -> list[float]:
    from service.config import load_settings
    from service.jobs_dispatch import enqueue
    from service.store.artifacts import ArtifactStore
    from service.store.jobs import JobStore

    settings = load_settings(data_dir=data_dir)
    store = JobStore(settings.resolved_database_url)
    artifacts = ArtifactStore(settings.artifacts_dir)
    jobs = [
        store.create_job(
            tenant="default",
            model_ref=artifacts.put(json.dumps(SPEC).encode(), suffix=".json"),
            data_ref=artifacts.put(json.dumps(DATA).encode(), suffix=".json"),
            options=OPTIONS,
            model_format="json",
            data_format="json",
            queue=settings.queue_cpu,
        )
        for _ in range(count)
    ]
    for job in jobs:
        enqueue(job, settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            current = [store.get_job(j.id) for j in jobs]
            if all(c is not None and c.is_terminal for c in current):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs not done within {timeout_s:g} s")
            time.sleep(0.2)
        bad = [c for c in current if c is None or c.status != "succeeded"]
        if bad:
            raise RuntimeError(f"job did not succeed: {bad[0]}")
        return [float(c.duration_s or 0.0) for c in current if c is not None]
    finally:
        store.dispose()


def measure_concurrency(data_dir: Path, *, timeout_s: float = 300.0) -> ConcurrencyResult:
    """Start a worker (concurrency 2) on ``data_dir``; time one job, two at once, one."""
    from service.config import load_settings
    from service.store.jobs import JobStore

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data_dir=data_dir)
    settings.ensure_dirs()
    JobStore(settings.resolved_database_url).migrate()
    argv = [sys.executable, "-c", "from service.cli import main; main()", "worker"]
    argv += ["--queues", settings.queue_cpu, "--concurrency", "2", "--pool", "prefork"]
    with open(data_dir / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            env=worker_env(data_dir),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            first = _run_jobs(data_dir, 1, timeout_s)[0]
            together = _run_jobs(data_dir, 2, timeout_s)
            last = _run_jobs(data_dir, 1, timeout_s)[0]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    return ConcurrencyResult((first, last), (together[0], together[1]))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="plcert-workers-bench-") as tmp:
        result = measure_concurrency(Path(tmp) / "data")
    rows = [
        ["alone (before, after)", " / ".join(f"{t:.2f}" for t in result.alone_s)],
        ["two at once", " / ".join(f"{t:.2f}" for t in result.together_s)],
        ["ratio (slower concurrent / mean alone)", f"{result.ratio:.2f}"],
    ]
    print(format_table(["worker --concurrency 2, seconds per job", "value"], rows), flush=True)


if __name__ == "__main__":
    main()
