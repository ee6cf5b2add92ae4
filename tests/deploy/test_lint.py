"""`make lint`: cfn-lint and checkov on template.yaml, from their own tool venvs.

cfn-lint must be clean. checkov must fail exactly the checks .checkov.yaml skips, each with its
reason there: a new finding fails this test instead of hiding in the list, and a skip that no
longer fails must leave it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1500)


def test_cfn_lint_is_clean(tools):
    r = subprocess.run([str(tools / "cfn-lint/bin/cfn-lint"), "template.yaml"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def _skips() -> list[str]:
    text = (REPO / ".checkov.yaml").read_text()
    skips = yaml.safe_load(text)["skip-check"]
    lines = text.splitlines()
    for check in skips:
        (i,) = [n for n, line in enumerate(lines) if line.strip() == f"- {check}"]
        above = lines[i - 1].strip()
        while above.startswith("- CKV"):  # a group of checks under one reason
            i -= 1
            above = lines[i - 1].strip()
        assert above.startswith("#"), f"{check} is skipped without a reason above it in .checkov.yaml"
    return skips


def test_checkov_fails_only_the_checks_skipped_with_a_reason(tools, tmp_path):
    skips = _skips()
    # run elsewhere: checkov reads a .checkov.yaml in its working directory by itself
    r = subprocess.run([str(tools / "checkov/bin/checkov"), "--framework", "cloudformation", "--skip-download",
                        "--quiet", "-o", "json", "-f", str(REPO / "template.yaml")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    report = json.loads(r.stdout)
    report = report[0] if isinstance(report, list) else report
    failing = sorted({f["check_id"] for f in report["results"]["failed_checks"]})
    assert failing == sorted(skips)
    assert report["summary"]["passed"] > 50 and report["summary"]["parsing_errors"] == 0


def test_make_lint_runs_both_with_that_configuration():
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "$(CFNLINT) template.yaml" in recipe
    assert "$(CHECKOV) --config-file .checkov.yaml" in recipe and "-f template.yaml" in recipe


@pytest.mark.parametrize("dockerfile", ["gateway/Dockerfile", "rspamd/Dockerfile"])
def test_the_images_dockerfiles_parse_and_pass_checkov(tools, tmp_path, dockerfile):
    """Docker is not on this machine: checkov's Dockerfile checks are what parses and lints the images'
    recipes. A skip must be inline (#checkov:skip=ID: reason) with its reason."""
    r = subprocess.run([str(tools / "checkov/bin/checkov"), "--framework", "dockerfile", "--skip-download",
                        "--quiet", "-o", "json", "-f", str(REPO / dockerfile)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    report = json.loads(r.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    assert (summary["failed"], summary["parsing_errors"]) == (0, 0), report.get("results", {}).get("failed_checks")
    assert summary["passed"] > 30
    for skip in re.findall(r"#checkov:skip=(\S+?):(.*)", (REPO / dockerfile).read_text()):
        assert len(skip[1].strip()) > 20, f"{dockerfile}: skip {skip[0]} without a reason"
