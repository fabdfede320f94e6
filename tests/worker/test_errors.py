"""Every plcore error class maps to a job error; anything else is 'internal' without details."""

from __future__ import annotations

import pytest

from plcore import errors as E
from service.errors import TYPE_PREFIX
from worker.errors import job_error, time_limit_error


@pytest.mark.parametrize("cls", E.ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_plcore_error_class_keeps_its_code_and_message_in_the_job_error(
    cls: type[E.PlcertError],
) -> None:
    err = job_error(cls("value 3 is bad"))
    assert err["type"] == TYPE_PREFIX + cls.code
    assert err["detail"] == "value 3 is bad"
    assert err["title"]


def test_unexpected_exceptions_are_internal_and_do_not_leak_their_message() -> None:
    err = job_error(KeyError("/secret/path"))
    assert err["type"] == TYPE_PREFIX + "internal"
    assert "/secret/path" not in err["detail"]


def test_time_limit_error_names_the_limit_and_the_setting() -> None:
    err = time_limit_error(12.5)
    assert err["type"] == TYPE_PREFIX + "time-limit"
    assert "12.5 s" in err["detail"] and "PLCERT_JOB_TIME_LIMIT_S" in err["detail"]
