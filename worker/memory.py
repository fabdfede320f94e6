"""The memory limit of one job: an address-space limit while it runs, and its out-of-memory
error.

Why ``RLIMIT_AS`` relative to the job's start, and not a watchdog on the resident size: an
allocation over an address-space limit fails at once, in the thread that asked, as a Python
``MemoryError`` or torch's ``RuntimeError: [enforce fail at alloc_cpu.cpp] ...
DefaultCPUAllocator: can't allocate memory``; the job fails with a clear error and the process
goes on to the next job. A watchdog sampling the RSS would have to kill the process (the job
cannot be interrupted at an arbitrary allocation), and the kernel's OOM killer takes the whole
worker down.

``RLIMIT_AS`` counts virtual memory, not resident memory, and torch reserves much more than it
touches: measured on the development machine, a pool process with torch and plcert imported
has 754 MiB of address space for 346 MiB resident, and a small job adds about 67 MiB to both.
An absolute limit of ``PLCERT_WORKER_MEMORY_LIMIT`` would therefore refuse jobs that fit, by an
amount that depends on the build. :func:`job_memory_limit` instead sets the soft limit to the
address space in use when the job starts plus the configured limit, so a job may grow by that
much; thread stacks (8 MiB each) and malloc arenas created during the job count against it, a
few tens of MiB with the worker's one-thread-per-job budget. Unreachable reference cycles are
collected before the address space is read: memory held only by garbage would otherwise count as
"in use" at the start and, once the cyclic collector frees it during the job, give the job that
much more than the limit (in CI's long-lived test process a 256 MiB allocation passed a 64 MiB
limit; a 320 MiB garbage cycle freed inside the job reproduces that). The collection takes about
0.12 s in a pool process. The previous soft limit
comes back when the job ends; the hard limit is never touched, so this can be done again for
every job.

A job on a GPU runs without it: the CUDA driver reserves address space for the device's memory
and a unified address range, far beyond what the process uses, so its initialisation can fail
under an address-space limit (not measured here: the development machine has no GPU); GPU
memory errors keep their own message.

The limit is per process: it applies where a process runs one job at a time (the prefork and
solo pools, see :func:`worker.celery_app.one_job_per_process`), never in the API process.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("plcert.worker")

_OOM_MARKERS = ("DefaultCPUAllocator: can't allocate memory", "CUDA out of memory")


def address_space_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """VmSize of this process in bytes, or None where /proc is not there."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextlib.contextmanager
def job_memory_limit(limit_bytes: int) -> Iterator[int | None]:
    """Run the body with ``RLIMIT_AS`` = address space now + ``limit_bytes`` (module docstring);
    yields the soft limit set, or None where it cannot be set (no /proc, a lower hard limit)."""
    gc.collect()
    used = address_space_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if used is None:
        yield None
        return
    target = used + limit_bytes
    if hard != resource.RLIM_INFINITY and target > hard:
        target = hard
    try:
        resource.setrlimit(resource.RLIMIT_AS, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not set the job's memory limit: %s", exc)
        yield None
        return
    try:
        yield target
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: ``MemoryError``, or torch's allocator error (CPU or CUDA)."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)
