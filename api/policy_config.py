"""Validation of an experiment's ``policy`` object before it is stored."""

from __future__ import annotations

from typing import Any

__all__ = ["check_policy"]


def check_policy(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parse ``params`` with the ``bandit`` package so a bad policy is refused at the API.

    :class:`bandit.errors.BanditError` propagates and becomes a 422 naming the parameter.
    """
    from bandit.policies import policy_from_dict

    policy_from_dict(kind, params)
    return params
