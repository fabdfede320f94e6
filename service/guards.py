"""Resource guards: a job's size checked against the ``PLCERT_MAX_*`` limits before any
allocation.

At submit (HTTP, and ``plcert certify`` locally) the sizes come from the bytes alone: the
parameter count m from a JSON spec (:mod:`plcore.models.spec_size`) or from the ONNX graph's
initializer dims (:mod:`plcore.models.onnx_size`), n and k from the data's headers or the
named dataset's table (:mod:`plcore.dataset_size`). :func:`plcore.estimate.limits.check_limits`
compares m, N = n k, 8 N^2 and m n with the settings; a violation is a 422 problem+json with
its own ``code`` (``too-many-parameters``, ``too-many-outputs``, ``kernel-too-large``,
``hessian-work-too-large``) and the estimate and the limit as extra fields, and nothing is
built or stored. A size that cannot be read this way is left to the loaders, which report
what is wrong with the input.
"""

from __future__ import annotations

from plcore.dataset_size import dataset_size
from plcore.errors import DatasetError
from plcore.estimate.limits import JobSize, LimitViolation, SizeLimits, check_limits
from service.errors import ProblemException

LIMIT_TITLES = {
    "too-many-parameters": "Model has too many parameters",
    "too-many-outputs": "Too many outputs (N = n k)",
    "kernel-too-large": "Tangent kernel too large",
    "hessian-work-too-large": "Hessian work too large",
}


def model_param_count(model: bytes, model_format: str) -> int | None:
    """m from a JSON spec or an ONNX graph, without building the model; None if unreadable."""
    if model_format == "onnx":
        from plcore.models.onnx_size import onnx_param_count

        return onnx_param_count(model)
    from plcore.models.spec_size import spec_size

    size = spec_size(model)
    return None if size is None else size.n_params


def job_size(model: bytes, model_format: str, data: bytes, data_format: str) -> JobSize | None:
    """m, n and k of a submission from its bytes (module docstring); None when a size cannot
    be read without loading.

    Raises:
        DatasetError: a named dataset asked for more samples than it has (after the limits:
            ``check_submission`` checks those first).
    """
    m = model_param_count(model, model_format)
    if data_format == "named":
        try:
            d = dataset_size(data.decode("utf-8"))
        except UnicodeDecodeError:
            d = None
    else:
        d = dataset_size(data, data_format)
    if m is None or d is None:
        return None
    return JobSize(n_params=m, n_samples=d.n_samples, n_outputs=d.n_outputs)


def problem_for(violation: LimitViolation) -> ProblemException:
    """The 422 answer of a violated limit: its code, and the estimate and limit as fields."""
    return ProblemException(
        422,
        violation.message,
        title=LIMIT_TITLES.get(violation.code, "Problem too large"),
        code=violation.code,
        extra={
            "code": violation.code,
            "quantity": violation.quantity,
            "estimate": violation.estimate,
            "limit": violation.limit,
            "setting": violation.setting,
        },
    )


def find_violation(
    model: bytes, model_format: str, data: bytes, data_format: str, limits: SizeLimits
) -> LimitViolation | None:
    """The first exceeded limit of a submission, or None; a named dataset asking for more
    samples than it has is a ``DatasetError`` (checked without loading it)."""
    size = job_size(model, model_format, data, data_format)
    if size is None:
        return None
    violation = check_limits(size, limits)
    if violation is None and data_format == "named":
        d = dataset_size(data.decode("utf-8"))
        if d is not None and d.n_samples > d.available:
            name = data.decode("utf-8").partition("?")[0]
            raise DatasetError(
                f"n={d.n_samples:,} is more than the {d.available:,} samples of {name}"
            )
    return violation


def check_submission(
    model: bytes, model_format: str, data: bytes, data_format: str, limits: SizeLimits
) -> None:
    """Raise the 422 :class:`ProblemException` of the first exceeded limit, if any."""
    violation = find_violation(model, model_format, data, data_format, limits)
    if violation is not None:
        raise problem_for(violation)
