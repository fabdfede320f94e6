"""The per-job address-space limit: an allocation over it fails as an out-of-memory error, and
the process's limit comes back afterwards."""

from __future__ import annotations

import resource

import pytest
import torch

from worker.errors import out_of_memory_error
from worker.memory import address_space_bytes, is_out_of_memory, job_memory_limit

MiB = 2**20


def test_an_allocation_over_the_limit_fails_and_the_limit_is_lifted_after() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    used = address_space_bytes()
    assert used is not None and used > 0
    with job_memory_limit(64 * MiB) as soft:
        assert soft is not None and used <= soft - 64 * MiB < used + 64 * MiB
        with pytest.raises(RuntimeError, match="can't allocate memory") as info:
            torch.empty(32 * MiB, dtype=torch.float64)  # 256 MiB
        assert is_out_of_memory(info.value)
        small = torch.zeros(MiB // 8)  # 1 MiB still fits
        assert small.sum() == 0
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert torch.empty(32 * MiB, dtype=torch.float64).numel() == 32 * MiB


def test_only_allocation_failures_count_as_out_of_memory() -> None:
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_the_error_names_the_limit_and_the_setting() -> None:
    error = out_of_memory_error(3 * 2**30)
    assert error["type"].endswith(":out-of-memory")
    assert error["detail"].startswith("out of memory: the job needed more than 3.00 GiB")
    assert "PLCERT_WORKER_MEMORY_LIMIT" in error["detail"]
