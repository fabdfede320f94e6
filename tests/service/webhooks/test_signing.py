"""Signatures checked with the reference implementation of Standard Webhooks."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.signing import new_secret, secret_key, sign, signed_headers


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(secret_key(a)) == 32


def test_the_reference_verifier_accepts_our_signature_and_returns_the_body() -> None:
    secret = new_secret()
    body = b'{"data":{"id":"abc","status":"succeeded"},"type":"certification.succeeded"}'
    headers = signed_headers(secret, "msg_abc", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["data"]["id"] == "abc"


def test_a_changed_body_another_secret_or_an_old_timestamp_fail_verification() -> None:
    secret = new_secret()
    body = b'{"a":1}'
    headers = signed_headers(secret, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    old = signed_headers(secret, "msg_1", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, old)


def test_signature_matches_the_spec_example() -> None:
    # The worked example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    got = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert base64.b64decode(got[3:])
