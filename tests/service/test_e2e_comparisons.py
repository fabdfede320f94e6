"""End to end: a comparison of two MLPs run as a Celery group by `plcert serve`'s real worker;
then `plcert compare --url` against the same server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from tests.service.e2e_support import (
    TINY_DATA,
    TINY_SPEC,
    Embedded,
    embedded_server,
    tiny_npz_bytes,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SPECS = [{**TINY_SPEC, "widths": [8]}, {**TINY_SPEC, "widths": [64]}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    with embedded_server(tmp_path_factory.mktemp("comparisons")) as srv:
        yield srv


def test_two_models_are_certified_as_a_group_and_ranked(server: Embedded) -> None:
    body = {"model_specs": SPECS, "data": TINY_DATA, "options": {"budget": "fast"}}
    r = httpx.post(f"{server.url}/v1/comparisons", json=body, timeout=60)
    assert r.status_code == 202, r.text
    cid = r.json()["id"]

    def ranked() -> dict | None:
        view = httpx.get(f"{server.url}/v1/comparisons/{cid}", timeout=30).json()
        return view if view["ranking"] is not None else None

    view = wait_until(ranked, timeout=300, interval=1.0, what="the ranking")
    assert view["status"] == "succeeded", (view, server.logs()[-3000:])
    ranking = view["ranking"]
    assert sorted(e["index"] for e in ranking) == [0, 1] and [e["rank"] for e in ranking] == [1, 2]
    members = {m["job_id"] for m in view["members"]}
    assert {e["job_id"] for e in ranking} == members
    for e in ranking:
        assert e["status"] == "succeeded" and e["verdict"] and e["tier"] and e["model_sha256"]
        assert e["report_html_url"] == f"/v1/certifications/{e['job_id']}/report.html"
        job = httpx.get(f"{server.url}/v1/certifications/{e['job_id']}", timeout=30).json()
        assert job["verdict"] == e["verdict"]
    assert "MLP 2-8-1" in " ".join(e["model"] for e in ranking)
    page = httpx.get(f"{server.url}/v1/comparisons/{cid}/report.html", timeout=30)
    assert page.status_code == 200 and page.text.count("data:image/png;base64,") == 1
    assert "<script" not in page.text
    # each member ran on the worker as a job of its own (the group's messages)
    logs = server.logs()
    assert all(f"job {j} claimed by" in logs for j in members)


def test_plcert_compare_against_the_server_writes_json_and_html(
    server: Embedded, tmp_path: Path
) -> None:
    models = []
    for i, spec in enumerate(SPECS):
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(spec))
        models.append(str(path))
    data = tmp_path / "data.npz"
    data.write_bytes(tiny_npz_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["compare", *models, str(data), "--url", server.url, "--budget", "fast",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "comparison.json").read_text())
    assert [m["name"] for m in saved["members"]] == ["m0.json", "m1.json"]
    assert len(saved["ranking"]) == 2
    assert "<table>" in (out / "comparison.html").read_text()
    assert " 1  MLP" in result.stdout
