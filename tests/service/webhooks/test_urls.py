"""Callback URLs: only http(s) to global addresses, unless PLCERT_WEBHOOK_ALLOW_PRIVATE."""

from __future__ import annotations

import pytest

from service.webhooks.urls import (
    MAX_URL_LENGTH,
    CallbackUrlRefused,
    check_callback_url,
    refused_reason,
    system_resolver,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),  # shared address space (CGNAT)
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("fd00::1", "private"),
    ],
)
def test_non_global_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    assert refused_reason(address) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_addresses_are_accepted(address: str) -> None:
    assert refused_reason(address) is None


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolve = _resolver({"hooks.example": ["93.184.215.14", "10.0.0.5"]})
    with pytest.raises(CallbackUrlRefused, match=r"resolves to 10\.0\.0\.5, a private address"):
        check_callback_url("https://hooks.example/x", allow_private=False, resolve=resolve)


def test_the_flag_admits_private_addresses_and_the_check_returns_them() -> None:
    resolve = _resolver({"hooks.example": ["10.0.0.5"]})
    checked = check_callback_url(
        "https://hooks.example:8443/path?q=1", allow_private=True, resolve=resolve
    )
    assert (checked.scheme, checked.host, checked.port) == ("https", "hooks.example", 8443)
    assert checked.addresses == ("10.0.0.5",)


def test_loopback_literal_is_refused_with_the_real_resolver() -> None:
    with pytest.raises(CallbackUrlRefused, match="loopback address"):
        check_callback_url("http://127.0.0.1:9/hook", allow_private=False)
    assert system_resolver("127.0.0.1", 80) == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://hooks.example/x", "must use http or https"),
        ("file:///etc/passwd", "must use http or https"),
        ("hooks.example/x", "must use http or https"),
        ("http:///x", "no host name"),
        ("https://user:pw@hooks.example/x", "credentials"),
        ("https://hooks.example:99999/x", "not a valid URL"),
        ("https://hooks.example/a b", "whitespace"),
        ("https://hooks.example/" + "a" * MAX_URL_LENGTH, "at most 2048"),
        ("https://nowhere.invalid/x", "does not resolve"),
    ],
)
def test_malformed_or_unresolvable_urls_are_refused(url: str, match: str) -> None:
    resolve = _resolver({"hooks.example": ["93.184.215.14"]})
    with pytest.raises(CallbackUrlRefused, match=match):
        check_callback_url(url, allow_private=True, resolve=resolve)
