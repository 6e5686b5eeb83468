"""Alerts: rules per experiment, evaluated by the reallocation lease holder, delivered to
Slack, PagerDuty (Events API v2) and generic JSON webhooks.

Modules: :mod:`.kinds` (what each rule kind measures and its threshold's range),
:mod:`.urls` (target URL checks and redaction), :mod:`.schemas` (HTTP bodies),
:mod:`.control` (targets and rules in the SQL store), :mod:`.signals` (the measurements),
:mod:`.payloads` (each target's message format), :mod:`.engine` (evaluation, outbox,
delivery with retries).
"""

from api.alerts.engine import AlertEngine, Evaluation

__all__ = ["AlertEngine", "Evaluation"]
