"""The message each kind of target receives for an alert's trigger or resolve.

- Slack incoming webhook: ``{"text": …, "blocks": [...]}``;
- PagerDuty Events API v2: ``routing_key``, ``event_action`` (``trigger``/``resolve``), a
  ``dedup_key`` stable per rule and subject (so PagerDuty folds a re-sent trigger into
  the same incident and the resolve closes it), and for a trigger the ``payload``
  (``summary`` ≤ 1024 characters, ``severity``, ``source``, ``custom_details``);
- generic JSON: the rule, experiment, subject, state, value, threshold and time, the
  body a retraining pipeline's webhook reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

__all__ = ["AlertMessage", "dedup_key", "message_body"]

MAX_SUMMARY: Final = 1024
MAX_DEDUP_KEY: Final = 255


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """What one delivery says, whatever the target's format."""

    event: Literal["trigger", "resolve"]
    alert_id: int
    rule_id: int
    rule_kind: str
    experiment: str
    subject: str
    value: float | None
    threshold: float
    window_s: int
    severity: str
    summary: str
    time: datetime


def dedup_key(experiment: str, rule_id: int, subject: str) -> str:
    """``banditlake/<experiment>/rule-<id>/<subject>``, hashed past 255 characters."""
    key = f"banditlake/{experiment}/rule-{rule_id}/{subject}"
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return key[: MAX_DEDUP_KEY - len(digest) - 1] + "~" + digest


def _headline(message: AlertMessage) -> str:
    word = "TRIGGERED" if message.event == "trigger" else "RESOLVED"
    return f"[{word}] {message.summary}"


def _slack(message: AlertMessage) -> dict[str, Any]:
    headline = _headline(message)
    fields = [
        f"*Experiment:* {message.experiment}",
        f"*Subject:* {message.subject}",
        f"*Rule:* {message.rule_kind} (#{message.rule_id})",
        f"*Value:* {_number(message.value)} (threshold {_number(message.threshold)})",
    ]
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ],
    }


def _pagerduty(message: AlertMessage, routing_key: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": message.event,
        "dedup_key": dedup_key(message.experiment, message.rule_id, message.subject),
    }
    if message.event == "trigger":
        body["client"] = "banditlake"
        body["payload"] = {
            "summary": message.summary[:MAX_SUMMARY],
            "severity": message.severity,
            "source": f"banditlake/{message.experiment}",
            "component": message.subject,
            "group": message.experiment,
            "class": message.rule_kind,
            "timestamp": message.time.isoformat(),
            "custom_details": _generic(message),
        }
    return body


def _generic(message: AlertMessage) -> dict[str, Any]:
    return {
        "alert_id": message.alert_id,
        "rule": {
            "id": message.rule_id,
            "kind": message.rule_kind,
            "threshold": message.threshold,
            "window_s": message.window_s,
            "severity": message.severity,
        },
        "experiment": message.experiment,
        "subject": message.subject,
        "state": "triggered" if message.event == "trigger" else "resolved",
        "value": message.value,
        "threshold": message.threshold,
        "summary": message.summary,
        "time": message.time.isoformat(),
    }


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def message_body(kind: str, message: AlertMessage, *, routing_key: str | None) -> dict[str, Any]:
    """The JSON body a ``kind`` target (slack, pagerduty, webhook) is sent."""
    if kind == "slack":
        return _slack(message)
    if kind == "pagerduty":
        assert routing_key is not None  # a pagerduty target is stored with its key
        return _pagerduty(message, routing_key)
    return _generic(message)
