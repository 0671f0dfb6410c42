"""`fabstir-node health` and `fabstir-node report` on a node home with nothing running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabstir.cli import main

pytestmark = pytest.mark.integration


def test_health_lists_every_check_and_exits_1_when_not_ready(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["health", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    checks = {check["name"]: check for check in status["checks"]}
    assert list(checks) == ["live", "model_loaded", "chain", "storage", "prefect", "capacity"]
    assert status["live"] is False and status["ready"] is False
    assert checks["chain"]["reason"].startswith("deployment file not found")
    assert checks["prefect"]["reason"] == "no Prefect API configured (PREFECT_API_URL)"
    assert checks["storage"]["ok"] and checks["capacity"]["ok"]
    assert status["resources"]["gpus"] or status["resources"]["gpu_absent_reason"]


def test_report_writes_html_and_plots_even_with_no_history(
    capsys: pytest.CaptureFixture[str], isolated_environment: Path
) -> None:
    assert main(["report", "--days", "3", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["figures"]["settled jobs"] == "0"
    for name in ("html", "latency", "earnings", "cache_hits", "json"):
        path = Path(output["files"][name].removeprefix("file://"))
        assert path.is_relative_to(isolated_environment.resolve()) and path.stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [["report", "--days", "0"], ["report", "--days", "x"], ["monitor", "--metrics-port", "70000"]],
)
def test_a_wrong_argument_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
