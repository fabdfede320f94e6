"""Which callback URLs are accepted, checked at submit and again before every delivery.

A callback URL must be ``http`` or ``https``, at most :data:`MAX_URL_LENGTH` characters, with a
host name and no credentials. Every address its host name resolves to must be *global*: no
private, loopback, link-local, multicast, reserved, unspecified or shared (CGNAT) address, also
inside an IPv4-mapped IPv6 address, unless ``PLCERT_WEBHOOK_ALLOW_PRIVATE`` is set. Otherwise a
tenant could make the service's workers call its internal network (SSRF).

The check runs twice: at submit (a bad URL is a 422), and before every delivery, whose
connection then goes to an address that this second check accepted (:class:`CheckedUrl`), so a
name that resolved to a public address at submit and to 127.0.0.1 later (DNS rebinding) is
refused, not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
"""Longest callback URL accepted (the ``jobs.callback_url`` column is this wide)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class CallbackUrlRefused(ValueError):
    """A callback URL that is malformed, does not resolve, or points at a refused address."""


@dataclass(frozen=True)
class CheckedUrl:
    """A callback URL that passed the check, with the addresses to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``; an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refused_reason(address: str) -> str | None:
    """Why connecting to ``address`` is refused, or None for a global unicast address."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


def split_callback_url(url: str) -> SplitResult:
    """The parts of a well-formed callback URL; raises :class:`CallbackUrlRefused`."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackUrlRefused(
            f"callback_url has {len(url)} characters; at most {MAX_URL_LENGTH} are accepted"
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise CallbackUrlRefused("callback_url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackUrlRefused(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackUrlRefused(
            f"callback_url must use http or https, not {parts.scheme or '(no scheme)'!r}"
        )
    if not parts.hostname:
        raise CallbackUrlRefused("callback_url has no host name")
    if parts.username is not None or parts.password is not None:
        raise CallbackUrlRefused("callback_url must not carry credentials (user:password@)")
    if port == 0:
        raise CallbackUrlRefused("callback_url has port 0")
    return parts


def check_callback_url(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolver
) -> CheckedUrl:
    """Check ``url`` as the module docstring says and resolve its host name.

    Raises:
        CallbackUrlRefused: with the reason (malformed, unresolvable, or which address of
            which kind), fit to show the tenant.
    """
    parts = split_callback_url(url)
    host = str(parts.hostname)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise CallbackUrlRefused(f"callback_url host {host!r} does not resolve: {exc}") from None
    if not addresses:
        raise CallbackUrlRefused(f"callback_url host {host!r} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refused_reason(address)
            if reason is not None:
                raise CallbackUrlRefused(
                    f"callback_url host {host!r} resolves to {address}, a {reason} address; "
                    "such addresses are refused unless PLCERT_WEBHOOK_ALLOW_PRIVATE is set"
                )
    return CheckedUrl(
        url=url, scheme=parts.scheme, host=host, port=port, addresses=tuple(addresses)
    )
