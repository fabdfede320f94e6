"""Resource guards at submit (issue 10, item 3): the huge jobs of the issue are refused with a
422 naming the limit, its estimate and its setting, before anything is built or stored."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pytest

from tests.service.conftest import AppFactory, assert_problem, mlp_spec, small_data

URL = "/v1/certifications"


def _zeros_npz(n: int, d: int, k: int) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.zeros((n, d)), y=np.zeros((n, k)))
    return buf.getvalue()


def _submit_json(client: Any, spec: dict[str, Any], data: Any) -> Any:
    return client.post(URL, json={"model_spec": spec, "data": data, "options": {"budget": "fast"}})


def _submit_npz(client: Any, spec: dict[str, Any], npz: bytes) -> Any:
    files = {
        "model": ("model.json", json.dumps(spec).encode(), "application/json"),
        "data": ("data.npz", npz, "application/octet-stream"),
    }
    return client.post(URL, files=files)


def _assert_refused(r: Any, code: str, setting: str, estimate: int, limit: int) -> dict[str, Any]:
    body = assert_problem(r, 422)
    assert body["code"] == code, body
    assert body["type"].endswith(code)
    assert body["setting"] == setting
    assert (body["estimate"], body["limit"]) == (estimate, limit)
    assert setting in body["detail"]
    return body


def _nothing_stored(client: Any, dispatch: Any) -> None:
    assert dispatch.sent == []
    assert client.get(URL).json()["items"] == []


def test_a_spec_of_width_a_million_is_refused_with_its_parameter_count(
    make_client: AppFactory,
) -> None:
    _, client, dispatch = make_client()
    spec = mlp_spec(input_dim=8, widths=(10**6, 10**6), output_dim=1)
    X, y = small_data(d=8)
    started = time.perf_counter()
    r = _submit_json(client, spec, {"X": X.tolist(), "y": y.tolist()})
    m = 8 * 10**6 + 10**6 + 10**12 + 10**6 + 10**6 + 1
    body = _assert_refused(r, "too-many-parameters", "PLCERT_MAX_PARAMS", m, 50_000_000)
    assert "1,000,011,000,001 parameters" in body["detail"]
    assert time.perf_counter() - started < 5  # counted, never built (8 TB of weights)
    _nothing_stored(client, dispatch)


def test_n_times_k_of_a_million_outputs_is_refused_from_the_npz_headers(
    make_client: AppFactory,
) -> None:
    _, client, dispatch = make_client()
    spec = mlp_spec(input_dim=2, widths=(16,), output_dim=10)
    r = _submit_npz(client, spec, _zeros_npz(100_000, 2, 10))
    body = _assert_refused(r, "too-many-outputs", "PLCERT_MAX_OUTPUTS", 10**6, 50_000)
    assert "N = n k = 100,000 x 10 = 1,000,000 outputs" in body["detail"]
    _nothing_stored(client, dispatch)


def test_a_conv_with_huge_channels_is_refused_with_its_parameter_count(
    make_client: AppFactory,
) -> None:
    _, client, dispatch = make_client()
    spec = {
        "type": "layers",
        "input_shape": [3, 8, 8],
        "output_dim": 1,
        "layers": [
            {"type": "conv2d", "out_channels": 100_000, "kernel_size": 3},
            {"type": "conv2d", "out_channels": 100_000, "kernel_size": 1},
            {"type": "global_avgpool"},
            {"type": "linear", "out": 1},
        ],
    }
    X = np.zeros((4, 3, 8, 8))
    r = _submit_npz(client, spec, _npz(X))
    m = (100_000 * 27 + 100_000) + (100_000 * 100_000 + 100_000) + (100_000 + 1)
    _assert_refused(r, "too-many-parameters", "PLCERT_MAX_PARAMS", m, 50_000_000)
    _nothing_stored(client, dispatch)


def _npz(X: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=X, y=np.zeros(X.shape[0]))
    return buf.getvalue()


def test_a_named_dataset_of_a_billion_samples_is_refused_before_loading(
    make_client: AppFactory,
) -> None:
    _, client, dispatch = make_client()
    spec = mlp_spec(input_dim=64, widths=(16,), output_dim=10)
    r = _submit_json(client, spec, "sklearn:digits?n=1000000000")
    _assert_refused(r, "too-many-outputs", "PLCERT_MAX_OUTPUTS", 10**10, 50_000)
    _nothing_stored(client, dispatch)


def test_a_kernel_over_the_byte_limit_is_refused(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    n = 47_000  # N under PLCERT_MAX_OUTPUTS, 8 N^2 = 17.7 GB over 16 GiB
    # m = 60,901 >= N, so the run would form the N x N kernel (for N > m it forms J^T J)
    spec = mlp_spec(input_dim=1, widths=(300, 200), output_dim=1)
    r = _submit_npz(client, spec, _zeros_npz(n, 1, 1))
    _assert_refused(r, "kernel-too-large", "PLCERT_MAX_KERNEL_BYTES", 8 * n**2, 16 * 2**30)
    _nothing_stored(client, dispatch)


def test_hessian_work_over_the_limit_is_refused(make_client: AppFactory) -> None:
    _, client, dispatch = make_client(max_hessian_work=10**9)
    spec = mlp_spec(input_dim=2, widths=(1000, 1000), output_dim=1)
    m = 2 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 + 1
    r = _submit_npz(client, spec, _zeros_npz(1000, 2, 1))
    _assert_refused(r, "hessian-work-too-large", "PLCERT_MAX_HESSIAN_WORK", m * 1000, 10**9)
    _nothing_stored(client, dispatch)


def test_the_limits_are_settings(make_client: AppFactory) -> None:
    _, client, _ = make_client(max_params=10)
    X, y = small_data()
    r = _submit_json(client, mlp_spec(), {"X": X.tolist(), "y": y.tolist()})
    _assert_refused(r, "too-many-parameters", "PLCERT_MAX_PARAMS", 3 * 16 + 16 + 16 + 1, 10)
    estimate = client.post("/v1/estimates", json={"model_spec": mlp_spec(), "data": "sklearn:iris"})
    assert_problem(estimate, 422)


def test_a_named_dataset_asking_for_more_than_it_has_is_refused(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    spec = mlp_spec(input_dim=4, widths=(8,), output_dim=3)
    body = assert_problem(_submit_json(client, spec, "sklearn:iris?n=151"), 422)
    assert "n=151 is more than the 150 samples" in body["detail"]
    _nothing_stored(client, dispatch)


@pytest.mark.parametrize("budget", ["fast"])
def test_a_small_job_passes_the_guards(make_client: AppFactory, budget: str) -> None:
    _, client, dispatch = make_client()
    spec = mlp_spec(input_dim=4, widths=(8,), output_dim=3)
    r = client.post(
        URL, json={"model_spec": spec, "data": "sklearn:iris?n=20", "options": {"budget": budget}}
    )
    assert r.status_code == 202, r.text
    assert len(dispatch.sent) == 1


def test_the_readme_example_c4_passes_the_default_limits() -> None:
    from pathlib import Path

    from plcore.estimate.limits import SizeLimits
    from service.guards import find_violation, job_size

    root = Path(__file__).resolve().parents[3] / "examples"
    spec, data = (root / "mlp_tanh_4096.json").read_bytes(), (root / "sphere16.npz").read_bytes()
    size = job_size(spec, "json", data, "npz")
    assert size is not None and (size.n_params, size.N) == (139_265, 16)
    assert find_violation(spec, "json", data, "npz", SizeLimits()) is None
