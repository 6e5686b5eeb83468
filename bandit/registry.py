"""The policies by kind: :func:`register_policy` adds one, :func:`get_policy` finds it.

A policy is one module: its configuration dataclass, its decide function and a
``POLICY = Policy(Config, decide)`` (:mod:`bandit.policy`). The built-in ones
are registered below, in the order the API lists them; code outside
:mod:`bandit` (a plug-in, a test's toy policy) calls :func:`register_policy`.

The table is the one piece of module state in :mod:`bandit`: a registry has to
be shared to be found. It is written when a module is imported (and by
:func:`register_policy` / :func:`unregister_policy`) and read everywhere else.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any

from bandit import canary, epsilon_greedy, fixed, thompson, ucb
from bandit.errors import InvalidPolicyError
from bandit.parameters import parameter_parsers
from bandit.policy import Policy, PolicyConfig

__all__ = ["get_policy", "policy_kinds", "register_policy", "unregister_policy"]

_POLICIES: dict[str, Policy[Any]] = {}


def register_policy(policy: Policy[Any], *, replace: bool = False) -> None:
    """Make ``policy`` available under its configuration's ``kind``.

    Raises
    ------
    TypeError
        When the configuration is not a dataclass deriving from
        :class:`~bandit.policy.PolicyConfig` (frozen, as dataclasses then
        require), or a parameter has an annotation
        :mod:`bandit.parameters` cannot parse.
    ValueError
        When the kind is empty, or taken and ``replace`` is false.
    """
    config = policy.config
    if not (isinstance(config, type) and issubclass(config, PolicyConfig) and is_dataclass(config)):
        msg = f"A policy's configuration must be a PolicyConfig dataclass, not {config!r}."
        raise TypeError(msg)
    if not config.kind:
        msg = f"The configuration {config.__name__} must name its policy in ``kind``."
        raise ValueError(msg)
    if config.kind in _POLICIES and not replace:
        msg = f"A policy of kind {config.kind!r} is already registered."
        raise ValueError(msg)
    parameter_parsers(config)
    _POLICIES[config.kind] = policy


def unregister_policy(kind: str) -> None:
    """Remove the policy of ``kind``; a kind that is not registered is ignored."""
    _POLICIES.pop(kind, None)


def get_policy(kind: str) -> Policy[Any]:
    """The policy registered as ``kind``, or InvalidPolicyError naming the known kinds."""
    try:
        return _POLICIES[kind]
    except KeyError:
        known = ", ".join(repr(k) for k in sorted(_POLICIES))
        msg = f"Unknown policy kind {kind!r}; expected one of {known}."
        raise InvalidPolicyError(msg) from None


def policy_kinds() -> tuple[str, ...]:
    """The registered kinds, in the order they were registered."""
    return tuple(_POLICIES)


for _builtin in (thompson.POLICY, epsilon_greedy.POLICY, ucb.POLICY, fixed.POLICY, canary.POLICY):
    register_policy(_builtin)
