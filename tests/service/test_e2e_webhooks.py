"""End to end: `plcert serve` (API + embedded Celery worker) delivers a signed webhook to a real
receiver on loopback, retrying with backoff; verified with the reference Standard Webhooks code.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.service.e2e_support import (
    TINY_DATA,
    TINY_SPEC,
    Embedded,
    embedded_server,
    wait_status,
    wait_until,
)
from tests.service.webhooks.receiver import Answer, receiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RETRY_BASE_S = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    with embedded_server(
        tmp_path_factory.mktemp("webhooks"),
        PLCERT_WEBHOOK_ALLOW_PRIVATE="true",
        PLCERT_WEBHOOK_RETRY_BASE_S=str(RETRY_BASE_S),
        PLCERT_WEBHOOK_TIMEOUT_S="5",
    ) as srv:
        yield srv


def test_a_receiver_failing_twice_gets_the_signed_event_three_times(server: Embedded) -> None:
    with receiver(Answer(500, b"down"), Answer(500, b"still down"), Answer(200, b"ok")) as rx:
        r = httpx.post(
            f"{server.url}/v1/certifications",
            json={"model_spec": TINY_SPEC, "data": TINY_DATA, "callback_url": rx.url},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        job = r.json()
        done = wait_status(server.url, job["id"], ["succeeded", "failed"], timeout=180)
        assert done["status"] == "succeeded", done
        got = rx.wait_for(3, timeout=60)

        def delivered() -> dict | None:
            d = httpx.get(f"{server.url}/v1/certifications/{job['id']}/deliveries").json()
            return d if d["status"] == "delivered" else None

        deliveries = wait_until(delivered, timeout=30, what="the delivery log")
    assert len(got) == 3, server.logs()[-3000:]
    secret = httpx.get(f"{server.url}/v1/webhooks/secret").json()["secret"]
    for request in got:
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "certification.succeeded"
        assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "succeeded"
        assert payload["data"]["report_url"] == f"/v1/certifications/{job['id']}/report"
    assert {r.headers["webhook-id"] for r in got} == {f"msg_{job['id']}"}
    # exponential backoff: about 0.5 s, then about 1 s between the attempts
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= RETRY_BASE_S * 0.9 and gaps[1] >= 2 * RETRY_BASE_S * 0.9, gaps
    items = deliveries["items"]
    assert [(i["attempt"], i["status_code"], i["succeeded"]) for i in items] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert items[0]["response_prefix"] == "down" and items[2]["duration_ms"] > 0
    assert deliveries["event_type"] == "certification.succeeded"
    job_view = httpx.get(f"{server.url}/v1/certifications/{job['id']}").json()
    assert job_view["webhook_status"] == "delivered"
