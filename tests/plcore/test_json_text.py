"""plcore.json_text.loads_strict: duplicate keys and deep nesting are ValueErrors."""

from __future__ import annotations

import json

import pytest

from plcore.json_text import DuplicateKeyError, TooDeepError, loads_strict


def test_plain_json_parses_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, {"b": null}], "c": "\\u00e9", "d": true}'
    assert loads_strict(text) == json.loads(text)
    assert loads_strict(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    "text", ['{"a": 1, "a": 2}', '{"x": [{"k": 1, "k": 1}]}', '[{"outer": {"i": 0, "i": 0}}]']
)
def test_a_key_given_twice_in_one_object_is_refused(text: str) -> None:
    with pytest.raises(DuplicateKeyError, match=r"the key '[a-z]+' appears twice in one object"):
        loads_strict(text)


def test_equal_keys_in_different_objects_are_fine() -> None:
    assert loads_strict('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


def test_nesting_beyond_the_recursion_limit_is_a_value_error() -> None:
    with pytest.raises(TooDeepError, match="nested too deeply"):
        loads_strict("[" * 100_000 + "]" * 100_000)
    assert issubclass(TooDeepError, ValueError) and issubclass(DuplicateKeyError, ValueError)


def test_text_that_is_not_json_keeps_its_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        loads_strict(" " * 1000)
    with pytest.raises(UnicodeDecodeError):
        loads_strict(b'{"a": "\xff"}')
