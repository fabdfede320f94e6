"""Size limits of a job, checked from sizes alone before the model or data exist.

A job with m parameters, n samples and k outputs per sample has N = n k constraints; from
these three numbers (read off a JSON spec, an ONNX graph's dims and the data's headers, see
:mod:`plcore.models.spec_size`, :mod:`plcore.models.onnx_size`, :mod:`plcore.dataset_size`):

====================  ===============  =================================================
quantity              estimate         why it is limited
====================  ===============  =================================================
parameters            m                parameter-sized vectors (~96 of them, see
                                       :mod:`plcore.estimate.cost`) and every pass
outputs               N = n k          the kernel is N x N; ``eigvalsh`` is O(N^3)
kernel memory         8 min(N, m)^2    the float64 Gram matrix the run forms (the stage
                                       holds ~5): K, N x N, or when N > m the parameter
                                       Gram J^T J, m x m (plcore.kernel.parameter_gram)
Hessian work          m n              a Hessian-vector product on all samples costs
                                       ~5 forward passes, each ~m multiply-adds a sample;
                                       the power method and Lanczos run tens of them
====================  ===============  =================================================

:func:`check_limits` returns the first limit exceeded, in the table's order, as a
:class:`LimitViolation` (code, estimate, limit, and a message naming the setting), or None.

Example::

    >>> check_limits(JobSize(n_params=10**12, n_samples=8, n_outputs=1), SizeLimits()).code
    'too-many-parameters'
"""

from __future__ import annotations

from dataclasses import dataclass

F64 = 8
"""Bytes of one float64."""


@dataclass(frozen=True)
class JobSize:
    """m, n and k of a job, and the sizes derived from them."""

    n_params: int
    n_samples: int
    n_outputs: int

    @property
    def N(self) -> int:
        """n k, the number of constraints (the kernel's side)."""
        return self.n_samples * self.n_outputs

    @property
    def kernel_bytes(self) -> int:
        """8 min(N, m)^2: one float64 tangent kernel K (N x N), or for N > m the parameter Gram
        J^T J (m x m) that replaces it."""
        return F64 * min(self.N, self.n_params) ** 2

    @property
    def hessian_work(self) -> int:
        """m n: parameter-sample products of one Hessian-vector product on all samples."""
        return self.n_params * self.n_samples


@dataclass(frozen=True)
class SizeLimits:
    """The configured caps (the service's ``PLCERT_MAX_*`` settings; defaults as there).

    The defaults admit every bench workload (C1-C4: at most m = 2.2 M, N = 5120, m n = 1.1e9)
    with a wide margin and refuse what cannot finish on one machine.
    """

    max_params: int = 50_000_000
    max_outputs: int = 50_000
    max_kernel_bytes: int = 16 * 2**30
    max_hessian_work: int = 10**12


@dataclass(frozen=True)
class LimitViolation:
    """One exceeded limit: a stable ``code``, the estimate, the limit and the setting."""

    code: str
    quantity: str
    estimate: int
    limit: int
    setting: str
    message: str


def _gib(b: int) -> str:
    return f"{b / 2**30:,.2f} GiB"


def check_limits(size: JobSize, limits: SizeLimits) -> LimitViolation | None:
    """The first limit of ``limits`` that ``size`` exceeds (module docstring), else None."""
    m, n, k, N = size.n_params, size.n_samples, size.n_outputs, size.N
    checks = (
        (
            "too-many-parameters",
            "parameters",
            m,
            limits.max_params,
            "PLCERT_MAX_PARAMS",
            f"the model has {m:,} parameters, over the limit of {limits.max_params:,}",
        ),
        (
            "too-many-outputs",
            "outputs",
            N,
            limits.max_outputs,
            "PLCERT_MAX_OUTPUTS",
            f"N = n k = {n:,} x {k:,} = {N:,} outputs, over the limit of {limits.max_outputs:,}",
        ),
        (
            "kernel-too-large",
            "kernel_bytes",
            size.kernel_bytes,
            limits.max_kernel_bytes,
            "PLCERT_MAX_KERNEL_BYTES",
            f"the {min(N, m):,} x {min(N, m):,} Gram matrix of the run (N = {N:,}, m = {m:,}) "
            f"needs 8 min(N, m)^2 = {_gib(size.kernel_bytes)}, "
            f"over the limit of {_gib(limits.max_kernel_bytes)}",
        ),
        (
            "hessian-work-too-large",
            "hessian_work",
            size.hessian_work,
            limits.max_hessian_work,
            "PLCERT_MAX_HESSIAN_WORK",
            f"a Hessian-vector product on all samples costs m n = {m:,} x {n:,} = "
            f"{size.hessian_work:.3g} parameter-sample products, over the limit of "
            f"{limits.max_hessian_work:.3g}",
        ),
    )
    for code, quantity, estimate, limit, setting, message in checks:
        if estimate > limit:
            return LimitViolation(
                code=code,
                quantity=quantity,
                estimate=estimate,
                limit=limit,
                setting=setting,
                message=f"{message} ({setting}): use fewer samples or a smaller model",
            )
    return None
