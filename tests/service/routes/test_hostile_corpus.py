"""A hostile-input corpus against POST /v1/certifications (issue 10, item 4).

Each case is a named request built from bytes (ONNX, JSON specs, datasets, options, raw HTTP)
with the exact status and problem ``type`` code it must get. After every case the service
answers GET /healthz with 200, and nothing stored changed: the job count and the set of
artifact files are those from before the case (one valid job is stored first, so "unchanged"
is not "empty"). The service is one app for the whole module, so a case that broke it would
show in the cases after it too.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from numpy.lib import format as npy_format
from sqlalchemy import text
from starlette.types import Message

from service.deps import get_dispatcher
from service.errors import TYPE_PREFIX
from service.main import create_app
from tests.service.conftest import (
    RecordingDispatcher,
    assert_problem,
    json_body,
    make_settings,
    mlp_spec,
    npz_bytes,
    onnx_mlp_bytes,
    small_data,
)

URL = "/v1/certifications"
MAX_UPLOAD = 16 * 2**20  # PLCERT_MAX_UPLOAD_BYTES of the app under attack
BODY_TIMEOUT_S = 0.5  # PLCERT_BODY_READ_TIMEOUT_S of the app under attack
SENTINEL = Path(tempfile.mkdtemp(prefix="plcert-hostile-")) / "unpickled"
"""Unpickling the object arrays of the corpus would create this file."""


@dataclass(frozen=True)
class Service:
    app: FastAPI
    client: TestClient
    dispatch: RecordingDispatcher
    tmp: Path


Send = Callable[[Service], httpx.Response | tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """One hostile request: ``send`` posts it; the answer must be ``status`` with ``code``."""

    name: str
    send: Send
    status: int
    code: str


# ----- request helpers ----------------------------------------------------------------------


Payload = bytes | Callable[[], bytes]


def _bytes(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else payload()


def _multipart(
    model: Payload | None = None,
    data: Payload | None = None,
    *,
    model_name: str = "model.json",
    data_name: str = "data.npz",
    options: str | None = None,
    weights: Payload | None = None,
) -> Send:
    """A multipart submission; payloads given as functions are built when the case runs."""

    def send(s: Service) -> httpx.Response:
        X, y = small_data()
        files = {
            "model": (
                model_name,
                _bytes(model) if model is not None else json.dumps(mlp_spec()).encode(),
            ),
            "data": (data_name, _bytes(data) if data is not None else npz_bytes(X, y)),
        }
        if weights is not None:
            files["weights"] = ("weights.npz", _bytes(weights))
        fields = {"options": options} if options is not None else None
        return s.client.post(URL, files=files, data=fields)

    return send


def _onnx(model: Payload) -> Send:
    return _multipart(model, model_name="model.onnx")


def _data(data: Payload, name: str) -> Send:
    return _multipart(data=data, data_name=name)


def _json(body: Any) -> Send:
    return lambda s: s.client.post(URL, json=body)


def _raw(content: bytes, content_type: str | None) -> Send:
    headers = {"content-type": content_type} if content_type is not None else {}
    return lambda s: s.client.post(URL, content=content, headers=headers)


def _spec(**changes: Any) -> Send:
    return _json(json_body(model_spec={**mlp_spec(), **changes}))


def _spec_file(text_: str | bytes) -> Send:
    return _multipart(text_.encode() if isinstance(text_, str) else text_)


def _options(options: Any) -> Send:
    return _json(json_body(options=options))


def _inline(X: Any, y: Any) -> Send:
    return _json(json_body(data={"X": X, "y": y}))


# ----- ONNX payloads ------------------------------------------------------------------------


def _onnx_graph(
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


def _gemm_inits(W: np.ndarray | None = None) -> list[Any]:
    from onnx import numpy_helper

    W = np.ones((1, 3), np.float32) if W is None else W
    return [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b"),
    ]


def _gemm(out: str = "y", inp: str = "x") -> Any:
    from onnx import helper

    return helper.make_node("Gemm", [inp, "W", "b"], [out], transB=1)


def onnx_unsupported_op() -> bytes:
    from onnx import helper

    nodes = [_gemm("h"), helper.make_node("Hardmax", ["h"], ["y"])]
    return _onnx_graph(nodes, _gemm_inits())


def onnx_custom_domain() -> bytes:
    from onnx import helper

    nodes = [_gemm("h"), helper.make_node("Evil", ["h"], ["y"], domain="com.evil")]
    return _onnx_graph(nodes, _gemm_inits(), domain="com.evil")


def onnx_external_data(location: str) -> bytes:
    """An initializer whose bytes live in a file named ``location`` (must never be opened)."""
    from onnx import TensorProto, numpy_helper

    inits = _gemm_inits()
    W = inits[0]
    W.ClearField("raw_data")
    W.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = W.external_data.add()
        entry.key, entry.value = key, value
    inits[0] = W
    assert numpy_helper is not None
    return _onnx_graph([_gemm()], inits)


def _tensor(name: str, dims: list[int], raw: bytes = b"") -> Any:
    """A float TensorProto built field by field (onnx.helper refuses inconsistent ones)."""
    from onnx import TensorProto

    t = TensorProto()
    t.name, t.data_type, t.raw_data = name, TensorProto.FLOAT, raw
    t.dims.extend(dims)
    return t


def onnx_huge_dims() -> bytes:
    """An initializer whose dims claim 10^12 elements (and that holds none)."""
    return _onnx_graph([_gemm()], [_tensor("W", [10**6, 10**6]), _tensor("b", [10**6])])


def onnx_nan_initializer() -> bytes:
    return _onnx_graph([_gemm()], _gemm_inits(np.array([[1.0, np.nan, 1.0]], np.float32)))


def onnx_no_inputs_outputs() -> bytes:
    return _onnx_graph([_gemm()], _gemm_inits(), inputs=False, outputs=False)


def onnx_cyclic() -> bytes:
    from onnx import helper

    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Tanh", ["a"], ["c"]),
        _gemm("y", "c"),
    ]
    return _onnx_graph(nodes, _gemm_inits())


def onnx_raw_data_short() -> bytes:
    """dims [1, 3] with 4 bytes of raw data instead of 12."""
    return _onnx_graph([_gemm()], [_tensor("W", [1, 3], b"\0" * 4), _gemm_inits()[1]])


# ----- dataset payloads ---------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _npz_members(members: dict[str, tuple[bytes, int]]) -> bytes:
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
    return _npz_members({"X": (_npy_header((10**9, 3)), 2**20), "y": (_npy_header((6,)), 48)})


def npz_huge_row() -> bytes:
    """n = 6 (under every job limit) but each sample claims 10^10 values (480 GB)."""
    X = (_npy_header((6, 10**10)), 4 * 2**20)
    return _npz_members({"X": X, "y": (_npy_header((6,)), 48)})


def npy_huge_row() -> bytes:
    return _npy_header((6, 10**10)) + bytes(48)


def npz_short_member() -> bytes:
    """X.npy says (6, 3) (144 bytes of data) and holds 8."""
    return _npz_members({"X": (_npy_header((6, 3)), 8), "y": (_npy_header((6,)), 48)})


def json_data_text(X: str, y: str, extra: str = "") -> bytes:
    return f'{{"X": {X}, "y": {y}{extra}}}'.encode()


def weights_huge_header() -> bytes:
    """Weights for mlp_spec() whose first member's header claims 10^10 entries (80 GB)."""
    return _npz_members(
        {
            "0.weight": (_npy_header((10**10,)), 48 * 8),
            "0.bias": (_npy_header((16,)), 16 * 8),
            "2.weight": (_npy_header((1, 16)), 16 * 8),
            "2.bias": (_npy_header((1,)), 8),
        }
    )


def weights_pickled() -> bytes:
    W = np.empty((16, 3), dtype=object)
    W[:] = 0.0
    W[0, 0] = _Touch(str(SENTINEL))
    buf = io.BytesIO()
    np.savez(buf, **{"0.weight": W, "0.bias": np.zeros(16)})
    return buf.getvalue()


def npz_small_header_huge_member() -> bytes:
    """X.npy says (6, 3) and then inflates to 600 MiB of zeros."""
    X = (_npy_header((6, 3)), 600 * 2**20)
    return _npz_members({"X": X, "y": (_npy_header((6,)), 48)})


class _Touch:
    """Unpickling this creates a file: the corpus checks that it never happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def npz_pickled(sentinel: Path) -> bytes:
    X = np.empty((6, 3), dtype=object)
    X[:] = 0.0
    X[0, 0] = _Touch(str(sentinel))
    buf = io.BytesIO()
    np.savez(buf, X=X, y=np.zeros(6))
    return buf.getvalue()


def npy_pickled(sentinel: Path) -> bytes:
    table = np.empty((6, 4), dtype=object)
    table[:] = 0.0
    table[0, 0] = _Touch(str(sentinel))
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


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# ----- HTTP payloads ------------------------------------------------------------------------


def _form_body(boundary: str, parts: list[tuple[bytes, bytes]]) -> bytes:
    """A multipart body from (Content-Disposition value, content) pairs, bytes as given."""
    out = b""
    for disposition, content in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"Content-Disposition: " + disposition + b"\r\n"
        out += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def non_utf8_filenames() -> Send:
    X, y = small_data()
    body = _form_body(
        "b0undary",
        [
            (b'form-data; name="model"; filename="\xff\xfe\xc3(model"', b"\x00\xff garbage"),
            (b'form-data; name="data"; filename="\xc0\xafdata.npz"', npz_bytes(X, y)),
        ],
    )
    return _raw(body, "multipart/form-data; boundary=b0undary")


def duplicate_fields() -> Send:
    X, y = small_data()
    spec = json.dumps(mlp_spec()).encode()
    body = _form_body(
        "b0undary",
        [
            (b'form-data; name="model"; filename="model.json"', spec),
            (b'form-data; name="data"; filename="data.npz"', npz_bytes(X, y)),
            (b'form-data; name="data"; filename="data.npz"', npz_bytes(X * 2, y)),
        ],
    )
    return _raw(body, "multipart/form-data; boundary=b0undary")


def model_as_text_field() -> Send:
    X, y = small_data()
    files = {"data": ("data.npz", npz_bytes(X, y))}
    return lambda s: s.client.post(URL, files=files, data={"model": json.dumps(mlp_spec())})


def streamed_oversized() -> Send:
    def chunks() -> Iterator[bytes]:
        yield b'{"model_spec": "'
        for _ in range(MAX_UPLOAD // 2**20 + 2):
            yield b" " * 2**20
        yield b'"}'

    return lambda s: s.client.post(
        URL, content=chunks(), headers={"content-type": "application/json"}
    )


def stalled_body() -> Send:
    """Sends the start of a JSON body, then nothing (the ASGI app must give up, 408)."""

    def send(s: Service) -> tuple[int, dict[str, Any]]:
        sent: list[Message] = []
        first = True

        async def receive() -> Message:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"model_spec": ', "more_body": True}
            await anyio.sleep(60)
            raise AssertionError("the server waited for the stalled body")

        async def collect(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": URL,
            "raw_path": URL.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "state": {},
        }

        async def run() -> None:
            with anyio.fail_after(10):
                await s.app(scope, receive, collect)

        anyio.run(run)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body)

    return send


# ----- the corpus ---------------------------------------------------------------------------


def corpus() -> list[Case]:
    onnx_ok = onnx_mlp_bytes()
    X, y = small_data()
    Xl, yl = X.tolist(), y.tolist()
    return [
        # ONNX
        Case("onnx-truncated", _onnx(onnx_ok[: len(onnx_ok) // 2]), 422, "model-format"),
        Case(
            "onnx-random-bytes",
            _onnx(np.random.default_rng(1).bytes(4096)),
            422,
            "model-format",
        ),
        Case("onnx-empty", _onnx(b""), 422, "model-format"),
        Case("onnx-unsupported-op", _onnx(onnx_unsupported_op), 422, "unsupported-operator"),
        Case("onnx-custom-domain", _onnx(onnx_custom_domain), 422, "unsafe-model"),
        Case(
            "onnx-external-etc-passwd",
            _onnx(onnx_external_data("/etc/passwd")),
            422,
            "unsafe-model",
        ),
        Case(
            "onnx-external-traversal",
            _onnx(onnx_external_data("../../../../etc/passwd")),
            422,
            "unsafe-model",
        ),
        Case(
            "onnx-external-missing-file",
            _onnx(onnx_external_data("/nonexistent/weights.bin")),
            422,
            "unsafe-model",
        ),
        Case("onnx-dims-10^12", _onnx(onnx_huge_dims), 422, "too-many-parameters"),
        Case("onnx-nan-initializer", _onnx(onnx_nan_initializer), 422, "model-format"),
        Case("onnx-no-inputs-outputs", _onnx(onnx_no_inputs_outputs), 422, "model-format"),
        Case("onnx-cyclic-graph", _onnx(onnx_cyclic), 422, "model-format"),
        Case("onnx-raw-data-short", _onnx(onnx_raw_data_short), 422, "model-format"),
        # JSON specs
        Case(
            "spec-nested-10^5-json-body",
            _raw(f'{{"model_spec": {_deep(10**5)}}}'.encode(), "application/json"),
            422,
            "validation",
        ),
        Case("spec-nested-10^5-file", _spec_file(_deep(10**5)), 422, "model-format"),
        Case(
            "spec-1e400-json-body",
            _raw(
                json.dumps(json_body()).replace('"input_dim": 3', '"input_dim": 1e400').encode(),
                "application/json",
            ),
            422,
            "validation",
        ),
        Case(
            "spec-1e400-file",
            _spec_file(json.dumps(mlp_spec()).replace('"seed": 0', '"weight_std": 1e400')),
            422,
            "model-spec",
        ),
        Case("spec-negative-width", _spec(widths=[-4]), 422, "validation"),
        Case("spec-zero-width", _spec(widths=[0]), 422, "validation"),
        Case(
            "spec-negative-width-file",
            _spec_file(json.dumps(mlp_spec(widths=(-4,)))),
            422,
            "model-spec",
        ),
        Case("spec-unknown-type", _spec(type="transformer"), 422, "validation"),
        Case("spec-unknown-activation", _spec(activation="__import__"), 422, "validation"),
        Case("spec-string-for-int", _spec(input_dim="3"), 422, "validation"),
        Case("spec-not-an-object-file", _spec_file("[1, 2, 3]"), 422, "model-spec"),
        Case("spec-10MB-whitespace-file", _spec_file(b" " * 10 * 2**20), 422, "model-format"),
        Case(
            "spec-duplicate-keys-json-body",
            _raw(
                json.dumps(json_body())
                .replace('"input_dim": 3', '"input_dim": 3, "input_dim": 3')
                .encode(),
                "application/json",
            ),
            422,
            "validation",
        ),
        Case(
            "spec-duplicate-keys-file",
            _spec_file(
                json.dumps(mlp_spec()).replace('"input_dim": 3', '"input_dim": 3, "input_dim": 3')
            ),
            422,
            "model-format",
        ),
        # datasets
        Case(
            "npz-header-claims-10^9-samples", _data(npz_huge_n, "data.npz"), 422, "too-many-outputs"
        ),
        Case("npz-header-claims-480GB-X", _data(npz_huge_row, "data.npz"), 413, "resource-limit"),
        Case(
            "npz-member-inflates-to-600MiB",
            _data(npz_small_header_huge_member, "data.npz"),
            413,
            "resource-limit",
        ),
        Case(
            "npz-pickled-object-array",
            _data(lambda: npz_pickled(SENTINEL), "data.npz"),
            422,
            "dataset",
        ),
        Case(
            "npy-pickled-object-array",
            _data(lambda: npy_pickled(SENTINEL), "data.npy"),
            422,
            "dataset",
        ),
        Case(
            "npz-nan-in-X", _data(npz_with(X=np.full((6, 3), np.nan)), "data.npz"), 422, "dataset"
        ),
        Case("npz-inf-in-y", _data(npz_with(y=np.full(6, np.inf)), "data.npz"), 422, "dataset"),
        Case(
            "npz-strings", _data(npz_with(X=np.array([["a"] * 3] * 6)), "data.npz"), 422, "dataset"
        ),
        Case("npz-no-y", _data(npz_without_y, "data.npz"), 422, "dataset"),
        Case("npz-not-a-zip", _data(b"PK\x03\x04 not a zip", "data.npz"), 422, "dataset"),
        Case("json-ragged-X", _inline([[1.0, 2.0, 3.0], [1.0, 2.0]], [0.0, 1.0]), 422, "dataset"),
        Case("json-n-mismatch", _inline(Xl, yl[:-1]), 422, "dataset"),
        Case("json-zero-samples", _inline([], []), 422, "dataset"),
        Case("json-non-numeric", _inline([["a", "b", "c"]], [0.0]), 422, "dataset"),
        Case(
            "json-nan-literal",
            _raw(
                json.dumps(json_body(data={"X": [[float("nan")] * 3] * 6, "y": yl})).encode(),
                "application/json",
            ),
            422,
            "dataset",
        ),
        Case(
            "csv-nul-bytes",
            _data(csv_text([*GOOD_ROWS[:3], "1.0,\x00,2.0,1", *GOOD_ROWS[3:]]), "data.csv"),
            422,
            "dataset",
        ),
        Case(
            "csv-non-numeric", _data(csv_text([*GOOD_ROWS, "x,y,z,w"]), "data.csv"), 422, "dataset"
        ),
        Case(
            "csv-utf16-bom",
            _data(csv_text(GOOD_ROWS).decode().encode("utf-16"), "data.csv"),
            422,
            "dataset",
        ),
        Case(
            "csv-bom-and-nan",
            _data(b"\xef\xbb\xbf" + csv_text([*GOOD_ROWS, "nan,1,2,3"]), "data.csv"),
            422,
            "dataset",
        ),
        Case(
            "sklearn-path-traversal",
            _json(json_body(data="sklearn:../../../etc/passwd")),
            422,
            "dataset",
        ),
        Case("sklearn-absolute-path", _json(json_body(data="sklearn:/etc/passwd")), 422, "dataset"),
        Case(
            "sklearn-encoded-traversal",
            _json(json_body(data="sklearn:%2e%2e/%2e%2e/etc/passwd")),
            422,
            "dataset",
        ),
        Case(
            "weights-header-claims-80GB", _multipart(weights=weights_huge_header), 422, "model-spec"
        ),
        Case(
            "weights-pickled-object-array", _multipart(weights=weights_pickled), 422, "model-spec"
        ),
        # options
        Case(
            "options-unknown-key",
            _options({"budget": "fast", "allow_pickle": True}),
            422,
            "validation",
        ),
        Case("options-seed-as-string", _options({"seed": "1"}), 422, "validation"),
        Case("options-negative-seed", _options({"seed": -1}), 422, "validation"),
        Case("options-seed-2^64", _options({"seed": 2**64}), 422, "validation"),
        Case("options-unknown-budget", _options({"budget": "infinite"}), 422, "validation"),
        Case("options-steps-over-range", _options({"validation_steps": 10**7}), 422, "validation"),
        Case("options-zero-batch", _options({"batch_sizes": [0]}), 422, "validation"),
        Case("options-device-path", _options({"device": "cuda:0/../../cpu"}), 422, "options"),
        Case("options-not-json", _multipart(options="{budget: fast"), 422, "validation"),
        Case(
            "options-duplicate-key", _multipart(options='{"seed": 1, "seed": 2}'), 422, "validation"
        ),
        Case("options-a-list", _multipart(options="[1, 2]"), 422, "validation"),
        # HTTP
        Case("http-text-plain", _raw(b"model=x", "text/plain"), 415, "unsupported-media-type"),
        Case("http-no-content-type", _raw(b"{}", None), 415, "unsupported-media-type"),
        Case("http-duplicate-data-part", duplicate_fields(), 422, "validation"),
        Case("http-model-as-text-field", model_as_text_field(), 422, "validation"),
        Case("http-non-utf8-filenames", non_utf8_filenames(), 422, "model-format"),
        Case(
            "http-missing-boundary",
            _raw(b"--x\r\n\r\n--x--\r\n", "multipart/form-data"),
            422,
            "validation",
        ),
        Case(
            "http-oversized-declared",
            _raw(b" " * (MAX_UPLOAD + 1), "application/json"),
            413,
            "body-too-large",
        ),
        Case("http-oversized-streamed", streamed_oversized(), 413, "body-too-large"),
        Case("http-stalled-body", stalled_body(), 408, "body-timeout"),
        Case("http-json-body-a-list", _raw(b"[1, 2, 3]", "application/json"), 422, "validation"),
        Case(
            "http-json-body-not-utf8",
            _raw(b'{"model_spec": "\xff\xfe"}', "application/json"),
            422,
            "validation",
        ),
        Case("http-json-body-empty", _raw(b"", "application/json"), 422, "validation"),
    ]


# ----- the service under attack -------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("hostile")
    settings = make_settings(tmp, max_upload_bytes=MAX_UPLOAD, body_read_timeout_s=BODY_TIMEOUT_S)
    app = create_app(settings)
    dispatch = RecordingDispatcher()
    app.dependency_overrides[get_dispatcher] = lambda: dispatch
    with TestClient(app, raise_server_exceptions=False) as client:
        seeded = client.post(URL, json=json_body())
        assert seeded.status_code == 202, seeded.text
        yield Service(app, client, dispatch, tmp)


def _stored(s: Service) -> tuple[int, frozenset[str]]:
    with s.app.state.store.engine.connect() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    root = Path(s.app.state.artifacts.root)
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return int(jobs), files


CASES = corpus()


def test_the_corpus_has_at_least_40_distinct_cases() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_a_hostile_request_gets_its_problem_and_changes_nothing(
    service: Service, index: int
) -> None:
    case = CASES[index]
    before = _stored(service)
    sent_before = list(service.dispatch.sent)

    answer = case.send(service)

    if isinstance(answer, tuple):
        status, body = answer
        assert status == case.status, body
    else:
        body = assert_problem(answer, case.status)
    assert body["type"] == TYPE_PREFIX + case.code, body
    assert "root:" not in json.dumps(body)  # no file content (/etc/passwd) is ever echoed
    assert service.client.get("/healthz").status_code == 200
    assert _stored(service) == before
    assert service.dispatch.sent == sent_before
    assert not SENTINEL.exists(), "a pickled object array was unpickled"
