"""A hostile-input corpus against POST /v1/certifications (issue 10, item 4).

Each case is a named request built from bytes (ONNX, JSON specs, datasets, options, raw HTTP)
with the exact status and problem ``type`` code it must get. After every case the service
answers GET /healthz with 200, and nothing stored changed: the job count and the set of
artifact files are those from before the case (one valid job is stored first, so "unchanged"
is not "empty"). The service is one app for the whole module, so a case that broke it would
show in the cases after it too.
"""

from __future__ import annotations

import json
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
from sqlalchemy import text
from starlette.types import Message

from service.deps import get_dispatcher
from service.errors import TYPE_PREFIX
from service.main import create_app
from tests.service.asgi_support import post_scope
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
from tests.service.hostile_payloads import (
    GOOD_ROWS,
    SENTINEL,
    csv_text,
    deep,
    gemm,
    gemm_inits,
    json_data_text,
    npy_huge_row,
    npy_pickled,
    npz_huge_n,
    npz_huge_row,
    npz_lying_member_size,
    npz_pickled,
    npz_short_member,
    npz_small_header_huge_member,
    npz_with,
    npz_without_y,
    onnx_custom_domain,
    onnx_cyclic,
    onnx_external_data,
    onnx_graph,
    onnx_huge_dims,
    onnx_nan_initializer,
    onnx_no_inputs,
    onnx_no_outputs,
    onnx_raw_data_short,
    onnx_unsupported_op,
    weights_huge_header,
    weights_pickled,
)

URL = "/v1/certifications"
MAX_UPLOAD = 16 * 2**20  # PLCERT_MAX_UPLOAD_BYTES of the app under attack
BODY_TIMEOUT_S = 0.5  # PLCERT_BODY_READ_TIMEOUT_S of the app under attack


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

        scope = post_scope(URL)

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
        Case("onnx-no-inputs", _onnx(onnx_no_inputs), 422, "unsupported-operator"),
        Case("onnx-no-outputs", _onnx(onnx_no_outputs), 422, "unsupported-operator"),
        Case(
            "onnx-inputs-and-outputs-undeclared",
            _onnx(lambda: onnx_graph([gemm()], gemm_inits(), inputs=False, outputs=False)),
            422,
            "model-format",
        ),
        Case("onnx-cyclic-graph", _onnx(onnx_cyclic), 422, "model-format"),
        Case("onnx-raw-data-short", _onnx(onnx_raw_data_short), 422, "model-format"),
        # JSON specs
        Case(
            "spec-nested-10^5-json-body",
            _raw(f'{{"model_spec": {deep(10**5)}}}'.encode(), "application/json"),
            422,
            "validation",
        ),
        Case("spec-nested-10^5-file", _spec_file(deep(10**5)), 422, "model-format"),
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
            "npz-member-size-forged-small",
            _data(npz_lying_member_size, "data.npz"),
            422,
            "dataset",
        ),
        Case("npy-header-claims-480GB", _data(npy_huge_row, "data.npy"), 413, "resource-limit"),
        Case("npz-member-shorter-than-header", _data(npz_short_member, "data.npz"), 422, "dataset"),
        Case(
            "json-data-file-nested-10^5",
            _data(json_data_text(deep(10**5), "[]"), "data.json"),
            422,
            "dataset",
        ),
        Case(
            "json-data-file-duplicate-keys",
            _data(json_data_text(json.dumps(Xl), json.dumps(yl), ', "y": [1]'), "data.json"),
            422,
            "dataset",
        ),
        Case(
            "npz-pickled-object-array",
            _data(npz_pickled, "data.npz"),
            422,
            "dataset",
        ),
        Case(
            "npy-pickled-object-array",
            _data(npy_pickled, "data.npy"),
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
            "json-data-1e400",
            _raw(
                json.dumps(json_body()).replace(f"{Xl[0][0]!r}", "1e400", 1).encode(),
                "application/json",
            ),
            422,
            "dataset",
        ),
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
        Case(
            "http-json-body-10MB-whitespace",
            _raw(b" \n\t\r" * (10 * 2**18), "application/json"),
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

DETAILS = {
    "onnx-external-etc-passwd": "external data is refused",
    "onnx-external-missing-file": "external data is refused",
    "onnx-nan-initializer": "not finite",
    "onnx-cyclic-graph": "topologically sorted",
    "onnx-no-inputs": "exactly one input",
    "onnx-no-outputs": "exactly one output",
    "spec-nested-10^5-file": "nested too deeply",
    "spec-duplicate-keys-json-body": "'input_dim' appears twice",
    "spec-duplicate-keys-file": "'input_dim' appears twice",
    "npz-header-claims-480GB-X": "claims shape (6, 10000000000)",
    "npy-header-claims-480GB": "claims shape (6, 10000000000)",
    "npz-member-inflates-to-600MiB": "629,145,728 bytes uncompressed",
    "npz-member-size-forged-small": "Bad CRC-32",
    "npz-member-shorter-than-header": "holds 8 bytes",
    "npz-pickled-object-array": "pickle",
    "npy-pickled-object-array": "pickle",
    "weights-header-claims-80GB": "claims shape (10000000000,)",
    "weights-pickled-object-array": "pickle",
    "json-data-file-nested-10^5": "nested too deeply",
    "json-data-file-duplicate-keys": "'y' appears twice",
    "options-duplicate-key": "'seed' appears twice",
    "options-seed-2^64": "less than or equal to 9223372036854775807",
    "http-oversized-streamed": "PLCERT_MAX_UPLOAD_BYTES",
    "http-stalled-body": "PLCERT_BODY_READ_TIMEOUT_S",
    "json-data-1e400": "non-finite",
}
"""What the ``detail`` of some answers must say (the check that they fail for the right reason)."""


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
    assert DETAILS.get(case.name, "") in body["detail"], body
    assert "root:" not in json.dumps(body)  # no file content (/etc/passwd) is ever echoed
    assert service.client.get("/healthz").status_code == 200
    assert _stored(service) == before
    assert service.dispatch.sent == sent_before
    assert not SENTINEL.exists(), "a pickled object array was unpickled"
