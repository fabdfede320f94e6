"""service.logging: one JSON object per line with request_id and job_id."""

from __future__ import annotations

import json
import logging

from service.logging import JsonFormatter, TextFormatter, bind_job_id, request_id_var


def _format(record_msg: str, **extra: object) -> dict[str, object]:
    logger = logging.getLogger("plcert.test")
    record = logger.makeRecord("plcert.test", logging.INFO, __file__, 1, record_msg, (), None)
    for k, v in extra.items():
        setattr(record, k, v)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out: dict[str, object] = json.loads(line)
    return out


def test_record_has_the_standard_fields() -> None:
    out = _format("hello")
    assert {"ts", "level", "logger", "msg"} <= set(out)
    assert out["msg"] == "hello" and out["level"] == "INFO" and out["logger"] == "plcert.test"
    assert "job_id" not in out and "request_id" not in out


def test_context_ids_and_extra_fields_are_included() -> None:
    token = request_id_var.set("req-1")
    try:
        with bind_job_id("job-9"):
            out = _format("working", stage="kernel")
    finally:
        request_id_var.reset(token)
    assert (out["request_id"], out["job_id"], out["stage"]) == ("req-1", "job-9", "kernel")


def test_exceptions_are_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        logger = logging.getLogger("plcert.test")
        record = logger.makeRecord(
            "plcert.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "boom" in json.loads(line)["exc"]


def test_each_request_logs_one_json_line_with_its_request_id(tmp_path: object) -> None:
    import io
    from pathlib import Path

    from fastapi.testclient import TestClient

    from service.main import create_app
    from tests.service.conftest import make_settings

    assert isinstance(tmp_path, Path)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("plcert.service.http")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with TestClient(create_app(make_settings(tmp_path))) as client:
            client.get("/healthz", headers={"X-Request-ID": "trace-7"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(
        r["request_id"] == "trace-7" and r["status"] == 200 and r["route"] == "/healthz"
        for r in lines
    ), lines


def test_json_lines_carry_no_raw_line_separators() -> None:
    logger = logging.getLogger("plcert.test")
    msg = "GET /a\u2028b\u0085c\u2029d\r\ne 200"
    record = logger.makeRecord("plcert.test", logging.INFO, __file__, 1, msg, (), None)
    line = JsonFormatter().format(record)
    assert line.isascii() and len(line.splitlines()) == 1
    assert json.loads(line)["msg"] == msg


def test_text_log_escapes_a_forged_line_in_a_request_path() -> None:
    logger = logging.getLogger("plcert.test")
    path = "/v1/x\n2026-01-01 00:00:00,000 INFO plcert: admin logged in\u2028"
    record = logger.makeRecord("plcert.test", logging.INFO, __file__, 1, "GET %s", (path,), None)
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert len(line.splitlines()) == 1
    assert (
        line == "INFO plcert.test: GET /v1/x\\n2026-01-01 00:00:00,000 INFO plcert: "
        "admin logged in\\u2028"
    )
