"""The per-job address-space limit: an allocation over it fails as an out-of-memory error, and
the process's limit comes back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT
from worker.errors import out_of_memory_error
from worker.memory import is_out_of_memory

# Run in a fresh interpreter: in a long-lived (xdist) test process, memory that earlier tests
# left to other threads or to garbage can be freed while the limit is set and make room for the
# allocation. The script first leaves a reference cycle holding 320 MiB, which only the cyclic
# collector frees: job_memory_limit must collect it before reading the address space, or the
# collection triggered inside the job frees it and the 256 MiB allocation fits.
_SCRIPT = """
import gc, resource, torch
from worker.memory import address_space_bytes, is_out_of_memory, job_memory_limit

MiB = 2**20


class Cycle:
    def __init__(self):
        self.tensor = torch.ones(40 * MiB, dtype=torch.float64)
        self.me = self


gc.disable()
Cycle()
before = resource.getrlimit(resource.RLIMIT_AS)
with job_memory_limit(64 * MiB) as soft:
    used = address_space_bytes()
    assert soft is not None and used <= soft - 64 * MiB < used + 64 * MiB, (used, soft)
    gc.collect()
    try:
        torch.empty(32 * MiB, dtype=torch.float64)  # 256 MiB
    except RuntimeError as exc:
        assert "can't allocate memory" in str(exc) and is_out_of_memory(exc), exc
    else:
        raise AssertionError("a 256 MiB allocation passed a 64 MiB limit")
    small = torch.zeros(MiB // 8)  # 1 MiB still fits
    assert small.sum() == 0
assert resource.getrlimit(resource.RLIMIT_AS) == before
assert torch.empty(32 * MiB, dtype=torch.float64).numel() == 32 * MiB
print("ok")
"""


def test_an_allocation_over_the_limit_fails_and_the_limit_is_lifted_after() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_only_allocation_failures_count_as_out_of_memory() -> None:
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_the_error_names_the_limit_and_the_setting() -> None:
    error = out_of_memory_error(3 * 2**30)
    assert error["type"].endswith(":out-of-memory")
    assert error["detail"].startswith("out of memory: the job needed more than 3.00 GiB")
    assert "PLCERT_WORKER_MEMORY_LIMIT" in error["detail"]
