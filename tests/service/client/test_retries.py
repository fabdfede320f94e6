"""Retries of the clients against a live API (uvicorn in a thread) with a tight rate limit:
429 answers are sent again after their Retry-After; a Retry-After above the client's limit, or
no retries left, raises the problem."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.client import AsyncPlcertClient, PlcertClient, PlcertHTTPError
from service.config import load_settings
from service.main import create_app
from tests.service.e2e_support import uvicorn_in_thread

PER_MINUTE = 60  # a burst of 60 requests, then one token a second (Retry-After: 1)


class RecordingTransport(httpx.HTTPTransport):
    """A plain connection that remembers each answer's status."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


@pytest.fixture
def limited_url(tmp_path: Path) -> Iterator[str]:
    settings = load_settings(data_dir=tmp_path / "data", dispatch="none", rate_limit=PER_MINUTE)
    with uvicorn_in_thread(create_app(settings)) as url:
        yield url


def test_rate_limited_requests_are_retried_after_retry_after(limited_url: str) -> None:
    with PlcertClient(limited_url, retries=0) as impatient:
        for _ in range(PER_MINUTE):
            impatient.list(limit=1)
        with pytest.raises(PlcertHTTPError) as err:
            impatient.list(limit=1)
    assert err.value.status == 429 and err.value.code == "rate-limited"
    assert err.value.retry_after is not None and err.value.retry_after >= 1

    transport = RecordingTransport()
    start = time.monotonic()
    with PlcertClient(limited_url, retries=3, transport=transport) as client:
        for _ in range(3):
            assert client.list(limit=1).items == []
    elapsed = time.monotonic() - start
    limited = transport.statuses.count(429)
    assert limited >= 2 and transport.statuses[-1] == 200, transport.statuses
    assert elapsed >= 0.9 * limited  # waited Retry-After (1 s) after each 429


def test_a_retry_after_above_the_limit_is_not_waited_for(limited_url: str) -> None:
    async def exhaust() -> float:
        async with AsyncPlcertClient(limited_url, retries=0) as client:
            await asyncio.gather(*(client.list(limit=1) for _ in range(PER_MINUTE)))
        async with AsyncPlcertClient(limited_url, retries=5, max_retry_after=0.5) as client:
            start = time.monotonic()
            with pytest.raises(PlcertHTTPError, match="HTTP 429"):
                await client.list(limit=1)
            return time.monotonic() - start

    assert asyncio.run(exhaust()) < 0.5
