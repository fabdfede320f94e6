"""One delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import json

import pytest

from service.webhooks.delivery import (
    RESPONSE_PREFIX_BYTES,
    event_body,
    post_event,
    retry_delay,
)
from tests.service.webhooks.receiver import Answer, receiver

HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}


def test_a_2xx_answer_is_a_success_with_the_body_and_headers_received() -> None:
    body = event_body("certification.succeeded", "2026-01-01T00:00:00Z", {"id": "j1"})
    with receiver(Answer(204, b"")) as rx:
        out = post_event(rx.url, body, HEADERS, timeout_s=5, allow_private=True)
        (got,) = rx.wait_for(1, timeout=5)
    assert out.succeeded and out.status_code == 204 and out.error is None
    assert got.path == "/hook" and got.body == body
    assert got.headers["webhook-id"] == "msg_1"
    assert got.headers["content-length"] == str(len(body))
    assert json.loads(got.body)["type"] == "certification.succeeded"


def test_the_connection_goes_to_the_checked_address_with_the_original_host_header() -> None:
    # "hooks.test" resolves (for this delivery) to the receiver's loopback address only: the
    # request reaches it without any other lookup, and keeps the name in its Host header.
    with receiver(Answer(200)) as rx:
        url = f"http://hooks.test:{rx.port}/hook"
        out = post_event(
            url, b"{}", HEADERS, timeout_s=5, allow_private=True,
            resolve=lambda host, port: ["127.0.0.1"],
        )  # fmt: skip
        (got,) = rx.wait_for(1, timeout=5)
    assert out.succeeded
    assert got.headers["host"] == f"hooks.test:{rx.port}"


def test_a_name_that_now_resolves_to_loopback_is_refused_without_connecting() -> None:
    # DNS rebinding: accepted at submit, loopback at delivery time.
    with receiver(Answer(200)) as rx:
        out = post_event(
            f"http://rebind.test:{rx.port}/hook", b"{}", HEADERS, timeout_s=5,
            allow_private=False, resolve=lambda host, port: ["127.0.0.1"],
        )  # fmt: skip
        assert rx.received == []
    assert not out.succeeded and out.status_code is None
    assert out.error is not None and "loopback" in out.error


def test_redirects_are_not_followed() -> None:
    with receiver(Answer(302, b"", location="/elsewhere")) as rx:
        out = post_event(rx.url, b"{}", HEADERS, timeout_s=5, allow_private=True)
        got = rx.wait_for(1, timeout=5)
    assert [r.path for r in got] == ["/hook"]
    assert not out.succeeded and out.status_code == 302
    assert out.error is not None and "not followed" in out.error


def test_only_a_short_prefix_of_the_answer_is_kept() -> None:
    with receiver(Answer(500, b"x" * 100_000)) as rx:
        out = post_event(rx.url, b"{}", HEADERS, timeout_s=5, allow_private=True)
    assert out.status_code == 500 and not out.succeeded
    assert out.response_prefix == "x" * RESPONSE_PREFIX_BYTES


def test_a_slow_receiver_times_out() -> None:
    with receiver(Answer(200, delay_s=1.5)) as rx:
        out = post_event(rx.url, b"{}", HEADERS, timeout_s=0.3, allow_private=True)
    assert not out.succeeded and out.status_code is None
    assert out.error is not None and "Timeout" in out.error
    assert 250 <= out.duration_ms < 1400


def test_a_closed_port_is_a_failed_attempt_not_an_exception() -> None:
    with receiver() as rx:
        url = rx.url
    out = post_event(url, b"{}", HEADERS, timeout_s=2, allow_private=True)
    assert out.status_code is None and out.error is not None and "connection" in out.error


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [retry_delay(k, base_s=10, max_s=60) for k in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]
    with pytest.raises(ValueError, match="failed_attempts must be >= 1"):
        retry_delay(0, base_s=1, max_s=1)
