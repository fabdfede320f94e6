"""The ``trainable`` / ``frozen`` options through the HTTP API: accepted, or a 422 at submit."""

from __future__ import annotations

import json
import re

import pytest

from tests.service.conftest import (
    AppFactory,
    assert_problem,
    json_body,
    multipart_files,
    onnx_mlp_bytes,
)

URL = "/v1/certifications"


def test_json_body_with_frozen_hidden_layer_is_accepted(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    r = client.post(URL, json=json_body(options={"budget": "fast", "frozen": ["0.*"]}))
    assert r.status_code == 202, r.text
    assert r.json()["options"]["frozen"] == ["0.*"]
    assert len(dispatch.sent) == 1


def test_multipart_onnx_with_trainable_initializers_is_accepted(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    files = multipart_files(onnx_mlp_bytes(), model_name="m.onnx")
    options = json.dumps({"trainable": ["W2", "b2"]})
    r = client.post(URL, files=files, data={"options": options})
    assert r.status_code == 202, r.text
    assert r.json()["options"]["trainable"] == ["W2", "b2"]


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"frozen": ["layer9.*"]}, "frozen pattern 'layer9.\\*' matches no parameter"),
        ({"trainable": ["W9"]}, "trainable pattern 'W9' matches no parameter"),
        ({"frozen": ["*"]}, "no parameter is left to train"),
    ],
)
def test_pattern_errors_are_a_422_at_submit(
    make_client: AppFactory, options: dict[str, list[str]], detail: str
) -> None:
    _, client, dispatch = make_client()
    files = multipart_files(onnx_mlp_bytes(), model_name="m.onnx")
    r = client.post(URL, files=files, data={"options": json.dumps(options)})
    body = assert_problem(r, 422)
    assert re.search(detail, body["detail"]), body["detail"]
    assert dispatch.sent == []
