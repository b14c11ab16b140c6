"""Output without surprises: plain Kubernetes YAML, truthful redrive figures, a sample
workload whose one rejection says it is deliberate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli import app
from conveyor.cli.dlq import _duration_and_rate
from conveyor.demo import DELIBERATELY_INVALID, Summary
from infra.export import kubernetes_manifests
from infra.topology import load_topology
from ops.dlq import RedriveResult
from tests import REPO


def test_the_kubernetes_export_has_no_yaml_anchors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = kubernetes_manifests(load_topology(REPO / "queues.yaml"))
    # Any dumper, even one that writes aliases for shared objects, writes plain YAML.
    for text in (yaml.safe_dump_all(manifests), yaml.dump_all(manifests)):
        assert "&id" not in text
        assert "*id" not in text
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = CliRunner().invoke(app, ["infra", "export", "kubernetes", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = [p.read_text() for p in tmp_path.glob("*.yaml")]
    assert written
    assert not [text for text in written if "&id" in text or "*id" in text]


def test_four_jobs_in_one_batch_report_no_per_second_rate() -> None:
    quick = RedriveResult(selected=4, moved=4, elapsed_s=0.0155)
    text = _duration_and_rate(quick, 5.0)
    assert text == "0.02 s (limit 5/s)"  # not "(258.1/s)"
    assert _duration_and_rate(quick, None) == "0.02 s"


def test_a_paced_run_reports_its_rate_and_the_limit() -> None:
    paced = RedriveResult(selected=20, moved=20, elapsed_s=3.8)
    assert _duration_and_rate(paced, 5.0) == "3.8 s (5.3/s, limit 5/s)"
    assert _duration_and_rate(paced, None) == "3.8 s (5.3/s)"


def test_the_sample_workloads_rejection_says_it_is_deliberate() -> None:
    summary = Summary(accepted=33, rejected=DELIBERATELY_INVALID)
    summary.rejections.append("image.resize: HTTP 422")
    assert "on purpose" in summary.render()
    unexpected = Summary(accepted=32, rejected=DELIBERATELY_INVALID + 1)
    assert "on purpose" not in unexpected.render()
