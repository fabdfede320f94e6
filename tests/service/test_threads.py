"""service.threads: the cores a process may use and its torch thread budget."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

from service.threads import (
    cgroup_cpu_quota,
    set_torch_threads,
    threads_per_process,
    usable_cores,
)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_quota_over_period(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == pytest.approx(1.5)


def test_cgroup_v2_max_means_no_quota(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota_is_read_and_minus_one_means_none(tmp_path: Path) -> None:
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "250000")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(tmp_path) == pytest.approx(2.5)
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    assert cgroup_cpu_quota(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None


def test_usable_cores_is_the_smaller_of_affinity_and_quota(tmp_path: Path) -> None:
    assert usable_cores(affinity=8, quota=2.5) == 2.5
    assert usable_cores(affinity=2, quota=4.0) == 2.0
    _write(tmp_path, "cpu.max", "100000 100000")
    assert usable_cores(affinity=16, root=tmp_path) == 1.0


def test_usable_cores_defaults_to_this_process_affinity(tmp_path: Path) -> None:
    assert usable_cores(root=tmp_path) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cores", "concurrency", "override", "expected"),
    [
        (8, 1, None, 8),
        (8, 3, None, 2),
        (2, 2, None, 1),
        (2, 4, None, 1),
        (1.5, 1, None, 1),
        (2, 2, 6, 6),
    ],
)
def test_threads_per_process_is_the_floor_of_the_share_or_the_override(
    cores: float, concurrency: int, override: int | None, expected: int
) -> None:
    assert threads_per_process(cores, concurrency, override) == expected


def test_threads_per_process_refuses_bad_counts() -> None:
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        threads_per_process(4, 0)
    with pytest.raises(ValueError, match="override must be >= 1, got 0"):
        threads_per_process(4, 1, 0)


def test_set_torch_threads_applies_to_threads_started_later() -> None:
    before = torch.get_num_threads()
    try:
        got = set_torch_threads(1)
        assert got.intra_op == torch.get_num_threads() == 1
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [1]
    finally:
        torch.set_num_threads(before)


def test_the_api_process_runs_torch_with_one_thread(tmp_path: Path) -> None:
    from service.main import API_TORCH_THREADS, create_app
    from tests.service.conftest import make_settings

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        create_app(make_settings(tmp_path))
        assert torch.get_num_threads() == API_TORCH_THREADS == 1
    finally:
        torch.set_num_threads(before)
