"""Redaction: which of a prediction's features the inference lake never sees as sent.

An experiment's ``redaction`` (``{"drop": [names], "hash": [names]}``, set through the
policy API) is compiled once per snapshot into a :class:`RedactionPlan`; the predict path
applies it to the features map of each lake row, after the model got its input, so the
models still see every feature: redaction is about what is *logged*.

* ``drop``: the feature is removed from the row's ``features`` map.
* ``hash``: the value is replaced by a keyed hash, :func:`keyed_hash`:
  HMAC-SHA256 under ``BANDITLAKE_REDACTION_SECRET`` of the experiment name, the feature
  name (each length-prefixed) and the value's canonical bytes (float64, big-endian,
  ``-0.0`` as ``0.0``, an integer as its float), its first 52 bits read as an integer and
  stored as a float. The lake's ``features`` column is ``MAP(VARCHAR, DOUBLE)``, and a
  52-bit integer is exactly representable as a double, so nothing is lost on the way.
  Equal values of one feature give equal hashes (joins and group-bys work on the hashed
  column), and without the secret the value cannot be recovered: trying candidate values
  needs the key. The experiment and feature are part of the message, so one value hashes
  differently in two features or two experiments.

A plan whose hashed features meet a service started without the secret drops them (the
policy API refuses to set ``hash`` without one, but the secret may be removed later):
a raw value never reaches the lake in their place.

The per-request cost is a dictionary ``pop`` per dropped feature and one one-shot
``hmac.digest`` per hashed one; an experiment without redaction has no plan and pays one
attribute check.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["HASH_BITS", "RedactionPlan", "compile_redaction", "hash_value", "keyed_hash", "redact"]

HASH_BITS: Final = 52
"""Bits of the HMAC kept: a double holds every integer below 2**53 exactly."""

_SHIFT: Final = 64 - HASH_BITS
_PACK = struct.Struct(">d").pack


@dataclass(frozen=True, slots=True)
class RedactionPlan:
    """One experiment's redaction, ready for the request path."""

    drop: tuple[str, ...]
    """Features removed from the lake row."""
    hashed: tuple[tuple[str, bytes], ...]
    """(feature, the HMAC message's prefix naming the experiment and the feature)."""


def _prefix(experiment: str, feature: str) -> bytes:
    e, f = experiment.encode(), feature.encode()
    return len(e).to_bytes(4, "big") + e + len(f).to_bytes(4, "big") + f


def compile_redaction(experiment: str, stored: Mapping[str, Any] | None) -> RedactionPlan | None:
    """The plan for the stored ``{"drop": [...], "hash": [...]}``; ``None`` when empty."""
    if not stored:
        return None
    drop = tuple(str(n) for n in stored.get("drop") or ())
    hashed = tuple((str(n), _prefix(experiment, str(n))) for n in stored.get("hash") or ())
    if not drop and not hashed:
        return None
    return RedactionPlan(drop, hashed)


def keyed_hash(secret: bytes, prefix: bytes, value: float) -> float:
    """The lake's stand-in for ``value``: 52 bits of HMAC-SHA256 as an exact float."""
    digest = hmac.digest(secret, prefix + _PACK(value + 0.0), "sha256")
    return float(int.from_bytes(digest[:8], "big") >> _SHIFT)


def hash_value(secret: bytes, experiment: str, feature: str, value: float) -> float:
    """The hash the lake holds for ``value`` of ``feature`` (to look a known value up)."""
    return keyed_hash(secret, _prefix(experiment, feature), value)


def redact(plan: RedactionPlan, named: dict[str, float], secret: bytes | None) -> None:
    """Apply ``plan`` to a lake row's features map, in place.

    Without ``secret`` the hashed features are dropped: never logged raw.
    """
    for name in plan.drop:
        named.pop(name, None)
    for name, prefix in plan.hashed:
        if name in named:
            if secret is None:
                del named[name]
            else:
                named[name] = keyed_hash(secret, prefix, named[name])
