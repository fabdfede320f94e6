"""How many torch threads a process may use, and setting them.

torch starts as many intra-op threads as the machine has cores, in every process. Two worker
processes (or a worker beside the API's validation threads) then oversubscribe the CPU: on a
2-core machine two certifications at once took 45 s each instead of 3.1 s (PITFALLS.md, "Machines
here"). Each process therefore budgets its threads from the cores it may use:

- a worker pool process: ``cores / concurrency`` (at least 1), or ``PLCERT_TORCH_THREADS``;
- the API process: 1 (its validation threads load models at submit; see ``service.main``);
- ``plcert certify`` alone: torch's default (all cores).

"Cores it may use" is the CPU affinity of the process, lowered by a cgroup CPU quota when one is
set (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` of cgroup v1): that is
what ``docker-compose``'s ``cpus:`` sets.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("plcert.threads")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup CPU quota (e.g. 1.5), or None when no quota is set.

    cgroup v2: ``{root}/cpu.max`` holds ``"QUOTA PERIOD"`` or ``"max PERIOD"``. cgroup v1:
    ``{root}/cpu/cpu.cfs_quota_us`` (``-1`` = none) over ``{root}/cpu/cpu.cfs_period_us``.
    """
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    for sub in ("cpu", "cpu,cpuacct"):
        quota_s = _read(root / sub / "cpu.cfs_quota_us")
        period_s = _read(root / sub / "cpu.cfs_period_us")
        if quota_s is None or period_s is None:
            continue
        try:
            quota, period = int(quota_s), int(period_s)
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores(
    *, affinity: int | None = None, quota: float | None = None, root: Path = CGROUP_ROOT
) -> float:
    """The CPUs this process may use: min(affinity, cgroup quota); arguments override probes."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            affinity = os.cpu_count() or 1
    if quota is None:
        quota = cgroup_cpu_quota(root)
    cores = float(max(affinity, 1))
    return min(cores, quota) if quota is not None else cores


def threads_per_process(cores: float, concurrency: int, override: int | None = None) -> int:
    """``override`` when given, else floor(cores / concurrency), at least 1."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if override is not None:
        if override < 1:
            raise ValueError(f"thread override must be >= 1, got {override}")
        return override
    return max(1, math.floor(cores / concurrency))


@dataclass(frozen=True)
class TorchThreads:
    """What torch reports after :func:`set_torch_threads` (read back, not what was asked)."""

    intra_op: int
    inter_op: int
    inter_op_set: bool  # False when torch had already started its inter-op pool


def set_torch_threads(n: int) -> TorchThreads:
    """Set torch's intra-op and inter-op thread counts of this process to ``n``.

    The inter-op count can only be set once per process and before any inter-op parallel work;
    torch raises RuntimeError after that, which is logged and leaves the count as it was.
    """
    import torch

    torch.set_num_threads(n)
    inter_set = True
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError as exc:
            inter_set = False
            log.debug("inter-op threads stay %d: %s", torch.get_num_interop_threads(), exc)
    return TorchThreads(torch.get_num_threads(), torch.get_num_interop_threads(), inter_set)


def budget_torch_threads(concurrency: int, override: int | None, *, role: str) -> TorchThreads:
    """Set this process's torch threads from its share of the cores, and log what was set."""
    cores = usable_cores()
    n = threads_per_process(cores, concurrency, override)
    got = set_torch_threads(n)
    log.info(
        "%s: torch threads intra-op %d, inter-op %d (usable cores %g, concurrency %d%s)",
        role,
        got.intra_op,
        got.inter_op,
        cores,
        concurrency,
        f", PLCERT_TORCH_THREADS={override}" if override is not None else "",
    )
    return got
