"""Policy parameters from JSON-like values, parsed by the configuration's type annotations.

A configuration field's annotation says how its JSON value is read:

==========================  ==========================================  ==========
annotation                  accepts                                     gives
==========================  ==========================================  ==========
``float``                   a finite number (not a bool)                ``float``
``int``                     an integer (not a bool, not ``10.5``)       ``int``
``str``                     a string                                    ``str``
``bool``                    ``true`` or ``false``                       ``bool``
``X | None``                ``null`` or what ``X`` accepts              ``X | None``
``tuple[X, ...]``           a list of what ``X`` accepts                ``tuple``
``Mapping[str, float]``     an object of numbers                        ``dict``
==========================  ==========================================  ==========

Any other annotation is refused when the policy is registered, so a parameter
is never passed through unchecked. Range checks stay in the dataclass's
``__post_init__``.
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields

from bandit.errors import InvalidPolicyError
from bandit.policy import PolicyConfig

__all__ = ["Parser", "parameter_parsers"]

Parser = Callable[[str, str, object], object]
"""``parser(policy_kind, parameter_name, value)`` → the parsed value, or InvalidPolicyError."""

_NONE_TYPE = type(None)


def _number(policy: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"Parameter {name!r} of policy {policy!r} must be a number, but {value!r} was given."
        raise InvalidPolicyError(msg)
    result = float(value)
    if not math.isfinite(result):
        msg = f"Parameter {name!r} of policy {policy!r} must be finite, but {value!r} was given."
        raise InvalidPolicyError(msg)
    return result


def _integer(policy: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = (
            f"Parameter {name!r} of policy {policy!r} must be an integer, but {value!r} was given."
        )
        raise InvalidPolicyError(msg)
    return int(value)


def _string(policy: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        msg = f"Parameter {name!r} of policy {policy!r} must be a string, but {value!r} was given."
        raise InvalidPolicyError(msg)
    return value


def _boolean(policy: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = (
            f"Parameter {name!r} of policy {policy!r} must be true or false, "
            f"but {value!r} was given."
        )
        raise InvalidPolicyError(msg)
    return value


_SCALARS: Mapping[object, tuple[Parser, str]] = {
    float: (_number, "numbers"),
    int: (_integer, "integers"),
    str: (_string, "strings"),
    bool: (_boolean, "booleans"),
}


def _optional(inner: Parser) -> Parser:
    def parse(policy: str, name: str, value: object) -> object:
        return None if value is None else inner(policy, name, value)

    return parse


def _sequence(inner: Parser, plural: str) -> Parser:
    def parse(policy: str, name: str, value: object) -> tuple[object, ...]:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            msg = (
                f"Parameter {name!r} of policy {policy!r} must be a list of {plural}, "
                f"but {value!r} was given."
            )
            raise InvalidPolicyError(msg)
        return tuple(inner(policy, name, v) for v in value)

    return parse


def _weights(policy: str, name: str, value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        msg = (
            f"Parameter {name!r} of policy {policy!r} must map arm names to numbers, "
            f"but {value!r} was given."
        )
        raise InvalidPolicyError(msg)
    return {_string(policy, name, k): _number(policy, name, v) for k, v in value.items()}


def _parser(annotation: object) -> Parser | None:
    if annotation in _SCALARS:
        return _SCALARS[annotation][0]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, type(int | None)) and _NONE_TYPE in args and len(args) == 2:
        (inner,) = (a for a in args if a is not _NONE_TYPE)
        parser = _parser(inner)
        return None if parser is None else _optional(parser)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        return _sequence(*_SCALARS[args[0]])
    if origin is Mapping and args == (str, float):
        return _weights
    return None


def parameter_parsers(config: type[PolicyConfig]) -> dict[str, Parser]:
    """A parser for every field of ``config``, from its type annotation.

    Raises
    ------
    TypeError
        When a field's annotation is not one of the table in the module docstring
        (a programming error in the policy, found when it is registered).
    """
    hints = typing.get_type_hints(config)
    parsers = {}
    for field in fields(config):
        parser = _parser(hints[field.name])
        if parser is None:
            msg = (
                f"Parameter {field.name!r} of policy {config.kind!r} has the annotation "
                f"{hints[field.name]!r}, which policy parameters cannot be parsed as."
            )
            raise TypeError(msg)
        parsers[field.name] = parser
    return parsers
