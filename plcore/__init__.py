"""plcore: the numerical core of plcert (pure: tensors, bytes and options in; typed results out).

Public API (see CONTRACT.md)::

    from plcore import load_model, load_dataset, tangent_kernel, certify, CertifyOptions
    model = load_model(source)            # ONNX bytes, or a JSON spec as dict / bytes
    data = load_dataset(source)           # bytes of .npz / .npy / .csv / .json, or "sklearn:NAME"
    K = tangent_kernel(model, data.X)     # N x N float64, N = n*k, sample-major
    report = certify(model, data, CertifyOptions())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plcore.dataset import Dataset
from plcore.errors import PlcertError
from plcore.models.base import Model
from plcore.options import CertifyOptions

if TYPE_CHECKING:
    from plcore.certification import certify
    from plcore.data import load_dataset
    from plcore.kernel import tangent_kernel
    from plcore.models.loader import load_model
    from plcore.report.schema import Report
    from plcore.report.study_schema import StudyResult
    from plcore.study import study_depth, study_width

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("plcore.models.loader", "load_model"),
    "load_dataset": ("plcore.data", "load_dataset"),
    "tangent_kernel": ("plcore.kernel", "tangent_kernel"),
    "certify": ("plcore.certification", "certify"),
    "Report": ("plcore.report.schema", "Report"),
    "study_width": ("plcore.study", "study_width"),
    "study_depth": ("plcore.study", "study_depth"),
    "StudyResult": ("plcore.report.study_schema", "StudyResult"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import plcore` stays cheap for the API process and avoids import cycles.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'plcore' has no attribute {name!r}")


__all__ = [
    "CertifyOptions",
    "Dataset",
    "Model",
    "PlcertError",
    "Report",
    "StudyResult",
    "__version__",
    "certify",
    "load_dataset",
    "load_model",
    "study_depth",
    "study_width",
    "tangent_kernel",
]
