"""The cattrs converters: HTTP request bodies (strict) and plugin messages (tolerant).

API bodies are strict on purpose: ``"username": 1`` or ``"is_active": "no"``
is an error, not a silent conversion, and unknown keys are refused so a typo
never goes unseen. Plugin messages follow the protocol's rule instead: unknown
fields are ignored.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)

#: Plugin messages are read tolerantly: unknown fields are ignored (old plugins send extras).
wire = cattrs.Converter()


def _strict(kind: type[Any], name: str) -> Any:
    def hook(value: Any, _: type[Any]) -> Any:
        # bool is an int in Python; JSON keeps them apart and so do we.
        if type(value) is not kind:
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return hook


converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))
converter.register_structure_hook(int, _strict(int, "an integer"))


class StructureError(ValueError):
    """A value did not fit the expected shape; the message lists every problem."""


def structure(data: Any, cls: type[T]) -> T:
    """Turn plain data into *cls*, raising :class:`StructureError` with readable reasons."""
    if not isinstance(data, dict):
        raise StructureError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise StructureError("; ".join(cattrs.transform_error(exc, path="body"))) from exc
