"""The curl examples of README.md's "## HTTP API" section run against a live `plcert serve`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_system_tool
from tests.service.e2e_support import (
    PLCERT,
    Proc,
    base_env,
    free_port,
    processes,
    tiny_npz_bytes,
    tiny_onnx_bytes,
    wait_ready,
)

DOC_URL = "http://127.0.0.1:8000"


def http_api_section() -> tuple[Path, str]:
    """The "## HTTP API" section of README.md."""
    path = ROOT / "README.md"
    match = re.search(r"^## HTTP API\s*$(.*?)(?=^## |\Z)", path.read_text(), re.M | re.S)
    assert match, "README.md has no '## HTTP API' section"
    return path, match.group(1)


def bash_blocks(section: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", section, re.M | re.S)


def test_the_section_has_curl_examples_for_every_endpoint() -> None:
    _, section = http_api_section()
    script = "\n".join(bash_blocks(section))
    for needle in (
        "POST " + DOC_URL + "/v1/certifications",
        "POST " + DOC_URL + "/v1/estimates",
        "-F model=@",
        "/report ",
        "/report.html",
        "/cancel",
        "-X DELETE",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert needle in script.replace(" \\\n", " ") + " ", needle


@pytest.mark.e2e
@pytest.mark.slow
def test_curl_examples_run_against_a_live_server(tmp_path: Path) -> None:
    require_system_tool("curl", "runs the README's HTTP examples")
    source, section = http_api_section()
    blocks = bash_blocks(section)
    assert blocks, f"no ```bash blocks in the HTTP API section of {source}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.onnx").write_bytes(tiny_onnx_bytes())
    (work / "data.npz").write_bytes(tiny_npz_bytes())
    script = "set -euo pipefail\n" + "\n".join(blocks).replace(DOC_URL, url)

    with processes() as procs:
        env = base_env(PLCERT_DATA_DIR=str(tmp_path / "data"))
        server = Proc([*PLCERT, "serve", "--port", str(port)], env, tmp_path / "serve.log")
        procs.append(server)
        wait_ready(url, server)
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, f"{source}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    report = json.loads((work / "report.json").read_text())
    assert report["verdict"] in ("certified", "not_certified", "inconclusive")
    assert "<html" in (work / "report.html").read_text().lower()
    assert "204\n" in result.stdout  # the DELETE example prints its status code
    assert (work / "metrics.txt").stat().st_size > 0
