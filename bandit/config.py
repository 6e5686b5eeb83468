"""Policy configurations from JSON-like mappings, and back.

Each policy's configuration dataclass lives in its module and is found by kind
in :mod:`bandit.registry`; its parameters are parsed by their type annotations
(:mod:`bandit.parameters`) and range-checked by the dataclass itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, fields

from bandit.errors import InvalidPolicyError
from bandit.parameters import parameter_parsers
from bandit.policy import PolicyConfig
from bandit.registry import get_policy

__all__ = ["default_min_weight", "policy_from_dict", "policy_to_dict", "required_parameters"]


def default_min_weight(kind: str) -> float:
    """The floor an experiment of this policy gets when it names none.

    See :attr:`bandit.policy.PolicyConfig.default_min_weight`: 0.02 for an
    adaptive policy, 0 for shares set by the operator (``fixed``, ``canary``).
    """
    floor: float = get_policy(kind).config.default_min_weight
    return floor


def required_parameters(kind: str) -> frozenset[str]:
    """The parameters of policy ``kind`` that have no default."""
    return frozenset(f.name for f in fields(get_policy(kind).config) if _required(f))


def _required(f: Field[object]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def policy_from_dict(kind: str, params: Mapping[str, object]) -> PolicyConfig:
    """Build a policy configuration from its kind and JSON-like parameters.

    ``params`` may repeat ``"kind"`` (as in the REST body); unknown kinds,
    unknown or missing parameters and values of the wrong type or range raise
    :class:`~bandit.errors.InvalidPolicyError` with a sentence naming them.
    """
    cls = get_policy(kind).config
    if "kind" in params and params["kind"] != kind:
        msg = f"The parameters name the policy kind {params['kind']!r}, but {kind!r} was given."
        raise InvalidPolicyError(msg)
    parsers = parameter_parsers(cls)
    values: dict[str, object] = {}
    for name, value in params.items():
        if name == "kind":
            continue
        if name not in parsers:
            known = ", ".join(sorted(parsers))
            msg = f"Policy {kind!r} has no parameter {name!r}; its parameters are {known}."
            raise InvalidPolicyError(msg)
        values[name] = parsers[name](kind, name, value)
    for f in fields(cls):
        if f.name not in values and _required(f):
            msg = f"Policy {kind!r} needs the parameter {f.name!r}."
            raise InvalidPolicyError(msg)
    config: PolicyConfig = cls(**values)
    return config


def policy_to_dict(config: PolicyConfig) -> dict[str, object]:
    """The JSON-ready form ``{"kind": ..., **params}``; the inverse of :func:`policy_from_dict`."""
    result: dict[str, object] = {"kind": config.kind}
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        result[f.name] = value
    return result
