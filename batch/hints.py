"""Matching a value against a type hint, and naming both in words: how a job file's setting
of the wrong type is said in one line (``config.check_type``)."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

TOML_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}


def toml_type(value: object) -> str:
    if type(value) in TOML_NAMES:
        return TOML_NAMES[type(value)]
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def is_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return isinstance(origin, type) and issubclass(origin, Mapping)


def is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def expected_type(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return "an array of " + {int: "integers", str: "strings"}.get(item, str(item))
    if is_mapping(hint):
        return "a table of names to strings"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if is_union(hint):
        return " or ".join(expected_type(a) for a in typing.get_args(hint) if a is not type(None))
    return {bool: "a boolean (true or false)", int: "an integer", float: "a number",
            str: "a string"}.get(hint, str(hint))


def fits(hint: Any, value: object) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(fits(item, v) for v in value)
    if is_mapping(hint):
        key, item = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            fits(key, k) and fits(item, v) for k, v in value.items()
        )
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if is_union(hint):
        return any(fits(a, value) for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not know: validate() judges the value
