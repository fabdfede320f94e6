"""Hostile payloads for the corpus of ``tests/service/routes/test_hostile_corpus.py``: ONNX
models, datasets and weights built byte by byte (the bombs lazily: a stream of zeros deflated,
a few hundred KB on disk for 600 MiB inflated; built once per process)."""

from __future__ import annotations

import functools
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from tests.service.conftest import npz_bytes, small_data

SENTINEL = Path(tempfile.mkdtemp(prefix="plcert-hostile-")) / "unpickled"
"""Unpickling any object array of the corpus would create this file."""


# ----- ONNX payloads ------------------------------------------------------------------------


def onnx_graph(
    nodes: list[Any],
    inits: list[Any],
    *,
    inputs: bool = True,
    outputs: bool = True,
    domain: str = "",
) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])] if inputs else [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])] if outputs else [],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return bytes(model.SerializeToString())


def gemm_inits(W: np.ndarray | None = None) -> list[Any]:
    from onnx import numpy_helper

    W = np.ones((1, 3), np.float32) if W is None else W
    return [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b"),
    ]


def gemm(out: str = "y", inp: str = "x") -> Any:
    from onnx import helper

    return helper.make_node("Gemm", [inp, "W", "b"], [out], transB=1)


def onnx_unsupported_op() -> bytes:
    from onnx import helper

    nodes = [gemm("h"), helper.make_node("Hardmax", ["h"], ["y"])]
    return onnx_graph(nodes, gemm_inits())


def onnx_custom_domain() -> bytes:
    from onnx import helper

    nodes = [gemm("h"), helper.make_node("Evil", ["h"], ["y"], domain="com.evil")]
    return onnx_graph(nodes, gemm_inits(), domain="com.evil")


def onnx_external_data(location: str) -> bytes:
    """An initializer whose bytes live in a file named ``location`` (must never be opened)."""
    from onnx import TensorProto

    inits = gemm_inits()
    W = inits[0]
    W.ClearField("raw_data")
    W.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = W.external_data.add()
        entry.key, entry.value = key, value
    return onnx_graph([gemm()], inits)


def tensor(name: str, dims: list[int], raw: bytes = b"") -> Any:
    """A float TensorProto built field by field (onnx.helper refuses inconsistent ones)."""
    from onnx import TensorProto

    t = TensorProto()
    t.name, t.data_type, t.raw_data = name, TensorProto.FLOAT, raw
    t.dims.extend(dims)
    return t


def onnx_huge_dims() -> bytes:
    """An initializer whose dims claim 10^12 elements (and that holds none)."""
    return onnx_graph([gemm()], [tensor("W", [10**6, 10**6]), tensor("b", [10**6])])


def onnx_nan_initializer() -> bytes:
    return onnx_graph([gemm()], gemm_inits(np.array([[1.0, np.nan, 1.0]], np.float32)))


def onnx_no_inputs() -> bytes:
    """A valid graph whose output is a Constant: nothing to feed the samples to."""
    from onnx import helper, numpy_helper

    value = numpy_helper.from_array(np.zeros((1, 1), np.float32))
    return onnx_graph([helper.make_node("Constant", [], ["y"], value=value)], [], inputs=False)


def onnx_no_outputs() -> bytes:
    return onnx_graph([gemm("h")], gemm_inits(), outputs=False)


def onnx_cyclic() -> bytes:
    from onnx import helper

    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Tanh", ["a"], ["c"]),
        gemm("y", "c"),
    ]
    return onnx_graph(nodes, gemm_inits())


def onnx_raw_data_short() -> bytes:
    """dims [1, 3] with 4 bytes of raw data instead of 12."""
    return onnx_graph([gemm()], [tensor("W", [1, 3], b"\0" * 4), gemm_inits()[1]])


# ----- dataset payloads ---------------------------------------------------------------------


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def npz_members(members: dict[str, tuple[bytes, int]]) -> bytes:
    """An .npz whose member ``name.npy`` is a header then ``zeros`` zero bytes, deflated as a
    stream (a few MB on disk for GBs inflated)."""
    buf = io.BytesIO()
    chunk = bytes(2**20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (header, zeros) in members.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                fh.write(header)
                for _ in range(zeros // len(chunk)):
                    fh.write(chunk)
                fh.write(bytes(zeros % len(chunk)))
    return buf.getvalue()


def npz_huge_n() -> bytes:
    return npz_members({"X": (npy_header((10**9, 3)), 2**20), "y": (npy_header((6,)), 48)})


def npz_huge_row() -> bytes:
    """n = 6 (under every job limit) but each sample claims 10^10 values (480 GB)."""
    X = (npy_header((6, 10**10)), 4 * 2**20)
    return npz_members({"X": X, "y": (npy_header((6,)), 48)})


def npy_huge_row() -> bytes:
    return npy_header((6, 10**10)) + bytes(48)


def npz_short_member() -> bytes:
    """X.npy says (6, 3) (144 bytes of data) and holds 8."""
    return npz_members({"X": (npy_header((6, 3)), 8), "y": (npy_header((6,)), 48)})


def json_data_text(X: str, y: str, extra: str = "") -> bytes:
    return f'{{"X": {X}, "y": {y}{extra}}}'.encode()


def weights_huge_header() -> bytes:
    """Weights for mlp_spec() whose first member's header claims 10^10 entries (80 GB)."""
    return npz_members(
        {
            "0.weight": (npy_header((10**10,)), 48 * 8),
            "0.bias": (npy_header((16,)), 16 * 8),
            "2.weight": (npy_header((1, 16)), 16 * 8),
            "2.bias": (npy_header((1,)), 8),
        }
    )


def weights_pickled() -> bytes:
    W = np.empty((16, 3), dtype=object)
    W[:] = 0.0
    W[0, 0] = Touch(str(SENTINEL))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in (("0.weight", W), ("0.bias", np.zeros(16))):
            with zf.open(f"{name}.npy", "w") as fh:
                np.save(fh, array, allow_pickle=True)
    return buf.getvalue()


@functools.cache
def npz_small_header_huge_member() -> bytes:
    """X.npy says (6, 3) and then inflates to 600 MiB of zeros (600 KiB on the wire)."""
    X = (npy_header((6, 3)), 600 * 2**20)
    return npz_members({"X": X, "y": (npy_header((6,)), 48)})


def npz_lying_member_size() -> bytes:
    """The 600 MiB member of :func:`npz_small_header_huge_member` with its size in the zip's
    central directory forged to header + 144 bytes, what its .npy header needs: a reader that
    trusted the stream instead of the declared size would inflate all of it."""
    data = bytearray(npz_small_header_huge_member())
    entry = data.find(b"PK\x01\x02")
    while data[entry + 46 : entry + 51] != b"X.npy":
        entry = data.find(b"PK\x01\x02", entry + 4)
    extra_len = int.from_bytes(data[entry + 30 : entry + 32], "little")
    claimed = len(npy_header((6, 3))) + 6 * 3 * 8
    if data[entry + 24 : entry + 28] == b"\xff" * 4:  # the size lives in the zip64 extra field
        extra = entry + 46 + int.from_bytes(data[entry + 28 : entry + 30], "little")
        assert data[extra : extra + 2] == b"\x01\x00" and extra_len >= 12
        data[extra + 4 : extra + 12] = claimed.to_bytes(8, "little")
    else:
        data[entry + 24 : entry + 28] = claimed.to_bytes(4, "little")
    return bytes(data)


class Touch:
    """Unpickling this creates a file: the corpus checks that it never happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def npz_pickled(sentinel: Path = SENTINEL) -> bytes:
    X = np.empty((6, 3), dtype=object)
    X[:] = 0.0
    X[0, 0] = Touch(str(sentinel))
    buf = io.BytesIO()
    np.savez(buf, X=X, y=np.zeros(6))
    return buf.getvalue()


def npy_pickled(sentinel: Path = SENTINEL) -> bytes:
    table = np.empty((6, 4), dtype=object)
    table[:] = 0.0
    table[0, 0] = Touch(str(sentinel))
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=True)
    return buf.getvalue()


def npz_with(X: np.ndarray | None = None, y: np.ndarray | None = None) -> bytes:
    X0, y0 = small_data()
    return npz_bytes(X0 if X is None else X, y0 if y is None else y)


def npz_without_y() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=small_data()[0])
    return buf.getvalue()


def csv_text(rows: list[str]) -> bytes:
    return ("a,b,c,y\n" + "\n".join(rows) + "\n").encode()


GOOD_ROWS = [f"{i}.0,{i}.5,{-i}.0,{i % 2}" for i in range(6)]


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels
