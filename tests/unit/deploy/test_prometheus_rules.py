"""The alert rules, checked and unit-tested by Prometheus's own promtool, and held to what the code exposes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from deploy import drift
from tests.promtool import promtool

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus"
DOCS = ROOT / "docs" / "operations" / "observability.md"


def alert_names() -> list[str]:
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False)


def test_rules_are_valid() -> None:
    checked = run_promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout


def test_rule_unit_tests_pass() -> None:
    tested = run_promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_seen_firing_and_quiet() -> None:
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert sorted(set(alert_names()) - fired) == []
    assert sorted(set(alert_names()) - quiet) == []


def test_a_broken_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests can fail: an error-rate alert at 50% instead of 5% no longer fires where it must."""
    (tmp_path / "alerts.yml").write_text((RULES / "alerts.yml").read_text().replace("> 0.05", "> 0.5"))
    (tmp_path / "alerts_test.yml").write_text((RULES / "alerts_test.yml").read_text())
    tested = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert tested.returncode != 0
    assert "TollgateHighErrorRate" in tested.stdout + tested.stderr


def test_alerts_read_only_exposed_metrics() -> None:
    assert drift.rules_problems() == []


def test_every_alert_has_its_runbook() -> None:
    page = DOCS.read_text()
    assert [name for name in alert_names() if f"### {name}" not in page] == []


def test_every_alert_has_a_dashboard_panel() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tollgate.json").read_text())
    titles = " ".join(panel["title"] for panel in dashboard["panels"] if panel["type"] != "row")
    assert [name for name in alert_names() if name not in titles] == []
    assert drift.dashboard_problems() == []
