"""The burn-in in the acceptance run: the full profile includes it, `--burn DURATION` sets its length."""

import pytest
from conftest import run_module

from mlbench.acceptance.plan import NodeLayout, build, select
from mlbench.exitcodes import UsageError

GPU8 = NodeLayout("g1", "cuda", 8)


def burn_step(plan):
    return next((s for s in plan.steps if s.name == "burn"), None)


def test_burn_is_opt_in():
    assert "burn" not in select(None, None)
    assert select(None, None, with_burn=True)[-1] == "burn"
    assert select("burn", None) == ["burn"]
    assert "burn" not in select(None, "burn", with_burn=True)
    with pytest.raises(UsageError):
        select("burnin", None)


def test_one_burn_process_per_gpu_all_at_once():
    plan = build("full", GPU8, "/d", "r", select(None, None, with_burn=True))
    step = burn_step(plan)
    assert step.concurrent and [p.out for p in step.processes] == [f"burn-gpu{i}.jsonl" for i in range(8)]
    for i, process in enumerate(step.processes):
        assert process.module == "mlbench.burn"
        args = list(process.args)
        assert args[args.index("--device") + 1] == f"cuda:{i}" and args[args.index("--duration") + 1] == "30m"
    assert step.estimate_s == 30 * 60 + 30
    longer = burn_step(build("standard", GPU8, "/d", "r", select(None, None, with_burn=True), burn="4h"))
    assert all(p.args[p.args.index("--duration") + 1] == "4h" for p in longer.processes)


def test_dry_run_full_lists_the_burn_step_and_burn_sets_its_length(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = cli("run", "--dry-run", "--profile", "full", "--device", "cpu")
    assert full.exit_code == 0, full.output
    burn_lines = [line for line in full.output.splitlines() if "mlbench.burn" in line]
    assert burn_lines == ["       python -m mlbench.burn --device cpu --out burn.jsonl --duration 60s"]
    longer = cli("run", "--dry-run", "--profile", "full", "--burn", "30m", "--device", "cpu")
    assert longer.exit_code == 0, longer.output
    assert "python -m mlbench.burn --device cpu --out burn.jsonl --duration 30m" in longer.output
    assert "burn-in for 30m" in longer.output
    standard = cli("run", "--dry-run", "--profile", "standard", "--device", "cpu")
    assert "mlbench.burn" not in standard.output and "--sustain 60.0" in standard.output
    bad = cli("run", "--dry-run", "--burn", "forever")
    assert bad.exit_code == 2 and "bad --burn" in bad.output
    assert list(tmp_path.iterdir()) == []


def test_bad_burn_is_one_line_and_exit_2(tmp_path):
    proc = run_module("mlbench", "run", "--dry-run", "--burn", "0s", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "mlbench: error: bad --burn '0s': must be more than 0"
    ]
