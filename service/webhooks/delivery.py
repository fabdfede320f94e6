"""One webhook delivery over HTTP, the event body, and the retry schedule.

A delivery:

1. checks the URL again and resolves it (:func:`service.webhooks.urls.check_callback_url`);
2. connects to an accepted address itself (the URL's host is replaced by that address; the
   ``Host`` header and, for https, the TLS server name and certificate check keep the host
   name), so nothing resolves the name a second time between check and connection;
3. POSTs the body with the signed headers; redirects are not followed (a 3xx is a failed
   attempt), connect and read each time out after ``PLCERT_WEBHOOK_TIMEOUT_S``;
4. reads at most :data:`RESPONSE_PREFIX_BYTES` of the answer and keeps them as text.

Any 2xx answer is a success; anything else (an error status, a redirect, a timeout, a refused
address) is a failed attempt, retried after :func:`retry_delay`.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from service.webhooks.urls import CallbackUrlRefused, Resolver, check_callback_url, system_resolver

RESPONSE_PREFIX_BYTES = 256
"""How much of a receiver's answer is read and kept (the delivery log shows it)."""
ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery attempt got: an HTTP status, or the error that prevented one."""

    status_code: int | None
    error: str | None
    duration_ms: float
    response_prefix: str | None

    @property
    def succeeded(self) -> bool:
        """True for a 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(failed_attempts: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait after the ``failed_attempts``-th failed delivery: ``base_s * 2^(k-1)``,
    at most ``max_s`` (exponential backoff)."""
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts must be >= 1, got {failed_attempts}")
    return float(min(base_s * 2.0 ** (failed_attempts - 1), max_s))


def event_id(job_id: str) -> str:
    """The ``webhook-id`` of a job's event: one per job (a job ends once), the same on every
    retry, so receivers can drop duplicates."""
    return f"msg_{job_id}"


def event_type(status: str) -> str:
    """The event type of a job that ended in ``status``: ``certification.<status>``."""
    return f"certification.{status}"


def event_body(event: str, timestamp: str, data: dict[str, Any]) -> bytes:
    """The JSON body of an event, in the Standard Webhooks shape ``{type, timestamp, data}``."""
    payload = {"type": event, "timestamp": timestamp, "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _pinned_url(parts: httpx.URL, address: str) -> httpx.URL:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return parts.copy_with(host=str(ip))


def post_event(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    allow_private: bool,
    resolve: Resolver = system_resolver,
) -> DeliveryOutcome:
    """Deliver one event (see the module docstring); never raises for a network problem."""
    started = time.monotonic()

    def outcome(
        status: int | None = None, error: str | None = None, prefix: str | None = None
    ) -> DeliveryOutcome:
        elapsed = (time.monotonic() - started) * 1000.0
        return DeliveryOutcome(status, error[:ERROR_MAX_CHARS] if error else None, elapsed, prefix)

    try:
        checked = check_callback_url(url, allow_private=allow_private, resolve=resolve)
    except CallbackUrlRefused as exc:
        return outcome(error=f"refused: {exc}")
    target = httpx.URL(url)
    host_header = target.netloc.decode("ascii")
    extensions: dict[str, Any] = {}
    if checked.scheme == "https":
        extensions["sni_hostname"] = checked.host
    timeout = httpx.Timeout(timeout_s)
    last_error = "no address to connect to"
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for address in checked.addresses:
            request = client.build_request(
                "POST",
                _pinned_url(target, address),
                content=body,
                headers={**headers, "host": host_header, "user-agent": "plcert-webhooks"},
                extensions=extensions,
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = f"connection to {address} failed: {exc}"
                continue  # the next address of the name, if any
            except httpx.HTTPError as exc:
                return outcome(error=f"{type(exc).__name__}: {exc}")
            try:
                prefix = _read_prefix(response)
            except httpx.HTTPError as exc:
                return outcome(response.status_code, f"reading the answer: {exc}")
            finally:
                response.close()
            error = None
            if response.is_redirect:
                error = f"redirect to {response.headers.get('location', '?')!r} not followed"
            return outcome(response.status_code, error, prefix)
    return outcome(error=last_error)


def _read_prefix(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= RESPONSE_PREFIX_BYTES:
            break
    return data[:RESPONSE_PREFIX_BYTES].decode("utf-8", "replace")
