"""Explicit weights for JSON-spec models: ``.safetensors`` or ``.npz`` bytes, never pickle.

The keys are the module's parameter names (``plcore.models.spec.parameter_names``), e.g.
``"0.weight", "0.bias", "2.weight", ...`` for an MLP; every key must be present with the exact
shape, no extra key is allowed, and every value must be finite. Values are converted to float64.

Format sniffing: ``.npz`` is a zip archive (``PK\\x03\\x04``); ``.safetensors`` starts with an
8-byte little-endian header length followed by the JSON header's ``{``.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from typing import IO, Final, Literal

import numpy as np
import torch
from numpy.lib import format as npy_format
from torch import Tensor, nn

from plcore.errors import ModelSpecError

WeightsFormat = Literal["safetensors", "npz"]
_HEADER_SLACK: Final = 16 * 1024 * 1024
"""Bytes allowed beyond 8 per parameter (headers, zip directory, metadata)."""


def sniff_weights_format(data: bytes) -> WeightsFormat:
    """``"npz"`` or ``"safetensors"`` by magic bytes; ModelSpecError for anything else."""
    if data[:4] == b"PK\x03\x04":
        return "npz"
    if len(data) >= 9 and data[8:9] == b"{":
        header_len = int.from_bytes(data[:8], "little")
        if 0 < header_len <= len(data) - 8:
            return "safetensors"
    raise ModelSpecError(
        f"weights are neither .safetensors nor .npz (first bytes {data[:10]!r}); "
        "pickled formats (.pt, .pth, .bin) are not accepted"
    )


def _to_float64(name: str, value: Tensor | np.ndarray) -> Tensor:
    t = torch.from_numpy(np.array(value, copy=True)) if isinstance(value, np.ndarray) else value
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or _is_int(t)):
        raise ModelSpecError(f"weight {name!r} has dtype {t.dtype}; a real numeric dtype is needed")
    return t.detach().to(torch.float64).contiguous()


def _is_int(t: Tensor) -> bool:
    return t.dtype in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def _check_header_matches_size(stream: IO[bytes], key: str, stored: int) -> None:
    """np.load allocates the array an .npy header claims before reading its data: a header
    that claims more bytes than the member holds (a 10^10-entry shape over 48 bytes) is refused
    from the header alone. Object arrays are left to np.load, which refuses pickles."""
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = npy_format.read_array_header_2_0(stream)
    claimed = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and stream.tell() + claimed != stored:
        raise ModelSpecError(
            f"weight {key!r} claims shape {tuple(shape)} of {dtype} ({claimed:,} bytes) in its "
            f".npy header but holds {stored - stream.tell():,} bytes of data"
        )


def _read_npz(data: bytes, expected: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor | None]:
    """The arrays of the expected keys (None for other keys, which are never decompressed)."""
    out: dict[str, Tensor | None] = {}
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        with archive:
            for key in archive.files:
                if key not in expected:
                    out[key] = None
                    continue
                size = archive.zip.getinfo(f"{key}.npy").file_size
                limit = 8 * math.prod(expected[key]) + 64 * 1024
                if size > limit:
                    raise ModelSpecError(
                        f"weight {key!r} holds {size:,} bytes uncompressed, more than a float64 "
                        f"array of shape {expected[key]} needs ({limit:,} with header)"
                    )
                with archive.zip.open(f"{key}.npy") as stream:
                    _check_header_matches_size(stream, key, size)
                try:
                    out[key] = _to_float64(key, archive[key])
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise ModelSpecError(
                            f"weight {key!r} is a pickled object array; only numeric arrays are "
                            "accepted (pickle is never loaded)"
                        ) from exc
                    raise
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise ModelSpecError(f"weights are not a readable .npz archive: {exc}") from exc
    return out


def _read_safetensors(data: bytes) -> dict[str, Tensor | None]:
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise ModelSpecError(f"weights are not a readable .safetensors file: {exc}") from exc
    return {k: _to_float64(k, v) for k, v in tensors.items()}


def read_weights(data: bytes, expected: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Parse and check weights against ``expected`` (name -> shape).

    Raises:
        ModelSpecError: unknown format, missing / extra keys, wrong shapes, non-finite values.
    """
    fmt = sniff_weights_format(data)
    n_expected = sum(math.prod(s) for s in expected.values())
    if len(data) > 8 * n_expected + _HEADER_SLACK:
        raise ModelSpecError(
            f"weights file has {len(data):,} bytes, far more than {n_expected:,} float64 "
            "parameters need"
        )
    found = _read_npz(data, expected) if fmt == "npz" else _read_safetensors(data)
    missing = [k for k in expected if k not in found]
    extra = sorted(k for k in found if k not in expected)
    wrong = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(v.shape)}"
        for k, v in found.items()
        if v is not None and k in expected and tuple(v.shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    if wrong:
        problems.append("wrong shapes [" + "; ".join(wrong) + "]")
    if problems:
        raise ModelSpecError(
            f"weights do not match the model ({', '.join(problems)}); expected keys and shapes: "
            + ", ".join(f"{k} {tuple(s)}" for k, s in expected.items())
        )
    tensors = {k: v for k, v in found.items() if v is not None}
    for k, v in tensors.items():
        bad = int((~torch.isfinite(v)).sum())
        if bad:
            raise ModelSpecError(f"weight {k!r} has {bad} non-finite values")
    return tensors


def load_weights_into(module: nn.Module, data: bytes) -> WeightsFormat:
    """Overwrite every parameter of ``module`` with the weights in ``data``; return the format."""
    params = dict(module.named_parameters())
    tensors = read_weights(data, {k: tuple(p.shape) for k, p in params.items()})
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    return sniff_weights_format(data)
