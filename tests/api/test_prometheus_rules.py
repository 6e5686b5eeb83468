"""deploy/prometheus/banditlake-alerts.yml: valid rules over metrics the service exports.

Every ``banditlake_*`` name in a rule's expression must be a sample the service's
``/metrics`` can show: a gauge's name, a counter's ``_total``, a histogram's ``_bucket``,
``_sum`` or ``_count``. ``promtool check rules`` and ``promtool test rules`` run too
where promtool is installed (Debian's ``prometheus`` package has it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "banditlake-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "banditlake-alerts.test.yml"
_NAME = re.compile(r"\bbanditlake_[A-Za-z0-9_:]*")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
}


def _exported(text: str) -> set[str]:
    """Every sample name the exposition ``text`` declares, by its metric families' types."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def _named(expr: str) -> set[str]:
    """The ``banditlake_*`` metric names in a PromQL expression (label values left out)."""
    return set(_NAME.findall(_QUOTED.sub('""', expr)))


def _rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_rule_is_complete() -> None:
    rules = _rules()
    assert len(rules) >= 6
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels.get("severity"), rule["alert"]
        assert isinstance(annotations, dict) and annotations.get("summary"), rule["alert"]


def test_every_metric_a_rule_names_is_exported(client: TestClient) -> None:
    exported = _exported(client.get("/metrics").text)
    assert "banditlake_requests_total" in exported
    assert "banditlake_request_latency_seconds_bucket" in exported
    assert "banditlake_request_latency_seconds_total" not in exported
    missing = {
        str(rule["alert"]): sorted(_named(str(rule["expr"])) - exported)
        for rule in _rules()
        if _named(str(rule["expr"])) - exported
    }
    assert missing == {}
    # The check is not vacuous: the rules name the service's metrics, and a wrong
    # suffix or a made-up name is caught.
    named = set().union(*(_named(str(r["expr"])) for r in _rules()))
    assert {"banditlake_lake_rows_dropped_total", "banditlake_lake_log_bytes"} <= named
    assert _named('rate(banditlake_nope_total{x="banditlake_y"}[5m])') == {"banditlake_nope_total"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
