"""Swagger UI's "Try it out" in headless Chromium: the worked examples of the POST bodies
succeed as they are (the JSON submission on a named scikit-learn dataset answers 202).

Chromium is driven over the DevTools protocol (a websocket; no Selenium): open /docs, expand
POST /v1/certifications, click "Try it out", then "Execute", and read the status Swagger UI
shows for the live answer.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import load_settings
from service.main import create_app
from service.submission import JSON_EXAMPLE, NAMED_DATA_EXAMPLE
from tests.conftest import CHROMIUM_FLAGS, require_system_tool
from tests.service.e2e_support import uvicorn_in_thread

TRY_IT_OUT_JS = """
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (get, what) => {
    for (let t = 0; t < 300; t++) { const v = get(); if (v) return v; await sleep(100); }
    throw new Error("timed out waiting for " + what);
  };
  const op = await until(() => document.getElementById(OP_ID), "the operation block");
  op.querySelector(".opblock-control-arrow").click();  // expand the operation
  (await until(() => op.querySelector(".try-out__btn"), "Try it out")).click();
  const body = await until(() => op.querySelector(".body-param textarea"), "the body editor");
  (await until(() => op.querySelector("button.execute"), "Execute")).click();
  const status = await until(() => {
    const cell = op.querySelector(".live-responses-table .response .response-col_status");
    return cell && cell.textContent.trim();
  }, "the response");
  const answer = op.querySelector(".live-responses-table .response-col_description pre");
  return {status, body: body.value, answer: answer ? answer.textContent : ""};
})()
"""


class DevTools:
    """A headless Chromium and a DevTools websocket to its first page."""

    def __init__(self, url: str, profile: Path) -> None:
        from websockets.sync.client import connect

        cmd = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        self.proc = subprocess.Popen(
            [*cmd, "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and self.proc.poll() is None, "no DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        self._conn = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.ws = self._conn.__enter__()
        self.ids = itertools.count(1)
        self._wait_loaded(url)

    def _wait_loaded(self, url: str) -> None:
        """Until the page at ``url`` has loaded (evaluating during navigation fails)."""
        deadline = time.monotonic() + 60
        script = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        while time.monotonic() < deadline:
            msg = self.call("Runtime.evaluate", expression=script, returnByValue=True, check=False)
            if msg.get("result", {}).get("result", {}).get("value") is True:
                return
            time.sleep(0.2)
        raise AssertionError(f"{url} did not load in Chromium")

    def call(self, method: str, check: bool = True, **params: Any) -> dict[str, Any]:
        """The answer's ``result`` (or, with ``check=False``, the whole answer)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # skip events and other answers
            msg = json.loads(self.ws.recv(timeout=90))
            if msg.get("id") == msg_id:
                if not check:
                    return dict(msg)
                assert "error" not in msg, msg
                return dict(msg["result"])

    def evaluate(self, script: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=script, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    def close(self) -> None:
        self._conn.__exit__(None, None, None)
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def browser_and_api(tmp_path: Path) -> Iterator[tuple[DevTools, str]]:
    require_system_tool("chromium", "runs Swagger UI's Try it out")
    # jobs are stored and answered 202, not run (no worker): the check is the HTTP answer
    app = create_app(load_settings(data_dir=tmp_path / "data", dispatch="none"))
    with uvicorn_in_thread(app) as url:
        devtools = DevTools(f"{url}/docs", tmp_path / "chromium")
        try:
            yield devtools, url
        finally:
            devtools.close()


def test_try_it_out_executes_the_named_dataset_example_with_202(
    browser_and_api: tuple[DevTools, str],
) -> None:
    devtools, url = browser_and_api
    op_id = "operations-certifications-create_certification"
    got = devtools.evaluate(TRY_IT_OUT_JS.replace("OP_ID", json.dumps(op_id)))
    assert got["status"] == "202", got
    assert json.loads(got["body"]) == NAMED_DATA_EXAMPLE  # the example it sent, untouched
    job = json.loads(got["answer"])
    assert job["status"] == "queued"
    stored = httpx.get(f"{url}/v1/certifications/{job['id']}", timeout=10).json()
    assert stored["id"] == job["id"]


@pytest.mark.parametrize("example", [NAMED_DATA_EXAMPLE, JSON_EXAMPLE])
def test_every_documented_submit_example_is_accepted(
    example: dict[str, Any], tmp_path: Path
) -> None:
    """The same bodies, for /v1/certifications and /v1/estimates, without a browser."""
    app = create_app(load_settings(data_dir=tmp_path / "data", dispatch="none"))
    spec = app.openapi()
    for path in ("/v1/certifications", "/v1/estimates"):
        body = spec["paths"][path]["post"]["requestBody"]
        assert list(body["content"]) == ["application/json", "multipart/form-data"]
        shown = [e["value"] for e in body["content"]["application/json"]["examples"].values()]
        assert example in shown and "curl -F model=@model.onnx" in body["description"]
    with uvicorn_in_thread(app) as url:
        assert httpx.post(f"{url}/v1/certifications", json=example, timeout=60).status_code == 202
        assert httpx.post(f"{url}/v1/estimates", json=example, timeout=60).status_code == 200
