"""Turning submitted bytes into a model and a dataset (used at submit and by the worker).

The API runs :func:`load_inputs` synchronously at submit, so a bad ONNX file, a bad spec, NaN
data or data that does not fit the model is a 422 answer and never a failed job; the worker
calls :func:`load_job_inputs` with the stored artifacts and gets the same objects.

Formats stored on a job: ``model_format`` is ``"onnx"`` or ``"json"``; ``data_format`` is one of
``"npz"``, ``"npy"``, ``"csv"``, ``"json"`` (bytes of that kind) or ``"named"`` (the artifact
holds a UTF-8 name like ``"sklearn:digits?n=64"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Literal

from plcore.data import check_fits, load_dataset, sniff_data_format
from plcore.dataset import Dataset
from plcore.errors import OptionsError
from plcore.models.base import Model
from plcore.models.loader import load_model, sniff_model_format
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord

ModelFormat = Literal["onnx", "json"]
DATA_FORMATS = ("npz", "npy", "csv", "json", "named")
MODEL_SUFFIX: dict[str, str] = {"onnx": ".onnx", "json": ".json"}
DATA_SUFFIX: dict[str, str] = {
    "npz": ".npz",
    "npy": ".npy",
    "csv": ".csv",
    "json": ".json",
    "named": ".txt",
}


def model_format_for(filename: str | None, content: bytes) -> ModelFormat:
    """``onnx`` or ``json`` from the file name's suffix, else from the content."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".json":
        return "json"
    return sniff_model_format(content)


def data_format_for(filename: str | None, content: bytes) -> str:
    """``npz``, ``npy``, ``csv`` or ``json`` from the file name's suffix, else from the content."""
    suffix = PurePosixPath(filename or "").suffix.lower().lstrip(".")
    if suffix in ("npz", "npy", "csv", "json"):
        return suffix
    return sniff_data_format(content)


def load_inputs(
    model_bytes: bytes,
    model_format: str,
    data_bytes: bytes,
    data_format: str,
    *,
    weights: bytes | None = None,
    trainable: Sequence[str] | None = None,
    frozen: Sequence[str] = (),
) -> tuple[Model, Dataset]:
    """Load and cross-check model and data; raises the plcore.errors of the loaders.

    ``trainable`` / ``frozen`` (the options of the same names) are applied at submit so that a
    pattern matching no parameter is a 422 answer, not a failed job.
    """
    fmt: ModelFormat = "onnx" if model_format == "onnx" else "json"
    model = load_model(model_bytes, format=fmt, weights=weights, trainable=trainable, frozen=frozen)
    if data_format == "named":
        data = load_dataset(data_bytes.decode("utf-8"))
    else:
        data = load_dataset(data_bytes, format=data_format)
    check_fits(model, data)
    return model, data


def load_job_inputs(job: JobRecord, artifacts: ArtifactStore) -> tuple[Model, Dataset]:
    """The model and dataset of a stored job, loaded from its artifacts."""
    weights = artifacts.get(job.weights_ref) if job.weights_ref else None
    return load_inputs(
        artifacts.get(job.model_ref),
        job.model_format,
        artifacts.get(job.data_ref),
        job.data_format,
        weights=weights,
    )


DEVICE_PATTERN = r"^(cpu|auto|cuda(:(0|[1-9][0-9]{0,2}))?)$"
"""Devices a job may ask for: ``cpu``, ``auto``, ``cuda`` or ``cuda:N`` (also in the OpenAPI)."""


def check_device(device: str) -> str:
    """``device`` if it matches :data:`DEVICE_PATTERN`; else an ``OptionsError`` (422) at submit,
    not a job stranded on the GPU queue or failed in the worker ("cudaX", "cuda:-1", "mps")."""
    if re.fullmatch(DEVICE_PATTERN, device) is None:
        raise OptionsError(
            f"options.device {device[:40]!r} is not one of 'cpu', 'auto', 'cuda', 'cuda:N'"
        )
    return device
