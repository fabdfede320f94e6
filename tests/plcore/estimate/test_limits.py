"""The size limits: each quantity against its limit, in order, with the estimate and setting."""

from __future__ import annotations

import pytest

from plcore.estimate.limits import JobSize, SizeLimits, check_limits

LIMITS = SizeLimits(
    max_params=1000, max_outputs=100, max_kernel_bytes=8 * 90**2, max_hessian_work=10**4
)


def test_sizes_at_every_limit_pass() -> None:
    assert check_limits(JobSize(n_params=100, n_samples=90, n_outputs=1), LIMITS) is None
    assert check_limits(JobSize(n_params=1000, n_samples=10, n_outputs=9), LIMITS) is None


@pytest.mark.parametrize(
    ("size", "code", "estimate", "setting"),
    [
        (JobSize(1001, 1, 1), "too-many-parameters", 1001, "PLCERT_MAX_PARAMS"),
        (JobSize(10, 101, 1), "too-many-outputs", 101, "PLCERT_MAX_OUTPUTS"),
        (JobSize(100, 13, 7), "kernel-too-large", 8 * 91**2, "PLCERT_MAX_KERNEL_BYTES"),
        (JobSize(200, 51, 1), "hessian-work-too-large", 10_200, "PLCERT_MAX_HESSIAN_WORK"),
        (JobSize(10**6, 10**6, 10), "too-many-parameters", 10**6, "PLCERT_MAX_PARAMS"),
    ],
)
def test_the_first_exceeded_limit_is_reported(
    size: JobSize, code: str, estimate: int, setting: str
) -> None:
    v = check_limits(size, LIMITS)
    assert v is not None
    assert (v.code, v.estimate, v.setting) == (code, estimate, setting)
    assert (
        v.limit
        == {
            "too-many-parameters": 1000,
            "too-many-outputs": 100,
            "kernel-too-large": 8 * 90**2,
            "hessian-work-too-large": 10**4,
        }[code]
    )
    assert setting in v.message


def test_the_defaults_admit_the_bench_workloads() -> None:
    # C1-512 (m 9,930, N 5,120), C2 (m 2.2 M, n 512), C4 (width 4096, n 16)
    for size in (JobSize(9_930, 512, 10), JobSize(2_232_321, 512, 1), JobSize(139_265, 16, 1)):
        assert check_limits(size, SizeLimits()) is None


def test_an_underparameterized_job_is_sized_by_its_parameter_gram() -> None:
    """N > m: the run forms J^T J (m x m), not K (N x N), so 8 N^2 over the limit is no reason
    to refuse; 8 m^2 is what counts."""
    size = JobSize(n_params=9_930, n_samples=4_096, n_outputs=10)
    assert size.kernel_bytes == 8 * 9_930**2
    assert check_limits(size, SizeLimits()) is None
    assert check_limits(size, SizeLimits(max_kernel_bytes=8 * 9_930**2 - 1)) is not None
