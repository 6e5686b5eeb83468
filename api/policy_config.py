"""Validation of an experiment's ``policy`` object before it is stored."""

from __future__ import annotations

from typing import Any

from bandit.config import policy_from_dict

__all__ = ["check_policy"]


def check_policy(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parse ``params`` with the ``bandit`` package so a bad policy is refused at the API.

    Returns the parameters as the policy understood them (defaults left out);
    :class:`bandit.errors.BanditError` propagates and becomes a 422 naming the parameter.
    """
    policy_from_dict(kind, params)
    return {k: v for k, v in params.items() if k != "kind"}
