"""JSON text parsed strictly, for untrusted specs and datasets.

``json.loads`` keeps the last of two equal keys in one object, so ``{"input_dim": 3,
"input_dim": 300}`` means different things to different parsers (a proxy, an audit log, this
service); and it raises ``RecursionError`` on deeply nested arrays (about 10^4 levels).
:func:`loads_strict` refuses both with a ``ValueError`` subclass, so that callers map every
unreadable text to their own ``InputError`` with one ``except ValueError``.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """An object of the JSON text gives the same key twice."""


class TooDeepError(ValueError):
    """The JSON text nests arrays or objects deeper than Python's parser can follow."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key[:80]!r} appears twice in one object")
        out[key] = value
    return out


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses duplicate keys and too deep nesting.

    Raises:
        DuplicateKeyError: a key given twice in one object.
        TooDeepError: nesting beyond the interpreter's recursion limit.
        json.JSONDecodeError, UnicodeDecodeError: not JSON (both are ``ValueError``).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise TooDeepError("the JSON text is nested too deeply") from None
