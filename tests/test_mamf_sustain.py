"""Sustained FLOPS: `mlbench mamf --sustain SECONDS` on the CPU, its arithmetic, its plan, the acceptance run."""

import pytest
from conftest import read_jsonl

from mlbench.acceptance.plan import NodeLayout, build, select
from mlbench.exitcodes import UsageError
from mlbench.mamf.plan import MamfOptions, Shape, best_record, make_plan, sustain_window_s
from mlbench.records import validate


@pytest.mark.slow
def test_short_sustain_run_writes_the_sustain_record_with_windows(cli, tmp_path):
    out = tmp_path / "mamf.jsonl"
    result = cli(
        "mamf",
        "--device",
        "cpu",
        "--shapes",
        "128x128x128,256x128x128",
        "--warmup-s",
        "0",
        "--sustain",
        "2",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert all(validate(r) == [] for r in records)
    *shapes, sustained = records
    assert len(shapes) == 2 and sustained["params"]["mode"] == "sustain"
    best = best_record(records)  # the burst: never the sustain record itself
    assert best in shapes and best["metrics"]["tflops"] == max(r["metrics"]["tflops"] for r in shapes)
    p, m, raw = sustained["params"], sustained["metrics"], sustained["raw"]
    assert (p["m"], p["n"], p["k"]) == (best["params"]["m"], best["params"]["n"], best["params"]["k"])
    assert p["window_s"] == 0.5 and p["sustain_s"] == 2
    # TFLOPS per window from the raw window times and call counts, by hand
    flops = 2 * p["m"] * p["n"] * p["k"]
    windows = [flops * calls / seconds / 1e12 for calls, seconds in zip(raw["calls"], raw["window_s"])]
    assert len(windows) >= 2 and m["tflops_windows"] == pytest.approx(windows)
    after_first = sorted(windows[1:])
    middle = len(after_first) // 2
    expected = after_first[middle] if len(after_first) % 2 else (after_first[middle - 1] + after_first[middle]) / 2
    assert m["tflops_sustained"] == pytest.approx(expected) and m["tflops"] == m["tflops_sustained"]
    assert m["tflops_burst"] == best["metrics"]["tflops"]
    assert m["drop_pct"] == pytest.approx(100 * (1 - m["tflops_sustained"] / m["tflops_burst"]))
    assert "sustained:" in result.output and "short burst" in result.output


def test_sustain_result_arithmetic():
    from mlbench.mamf.plan import DTYPES
    from mlbench.mamf.probe import sustain_result

    shape = Shape(1000, 1000, 1000)  # 2e9 FLOP per call
    result = sustain_result(shape, {}, [1.0, 0.5, 0.5, 0.25], [10, 10, 10, 10], 0.05, 0.0, DTYPES["bf16"])
    m = result.metrics
    assert m["tflops_windows"] == pytest.approx([0.02, 0.04, 0.04, 0.08])
    assert m["tflops_sustained"] == pytest.approx(0.04)  # median of the windows after the first
    assert m["drop_pct"] == pytest.approx(20.0)
    assert m["time_ms"] == pytest.approx(50.0) and m["windows"] == 4 and m["calls"] == 40
    assert result.ok
    wrong = sustain_result(shape, {}, [1.0, 1.0], [1, 1], None, 1.0, DTYPES["bf16"])
    assert not wrong.ok and "check_failed" in wrong.flags and "drop_pct" not in wrong.metrics


def test_plan_and_its_errors():
    plan = make_plan("cpu", MamfOptions(quick=True, sustain_s=60))
    assert plan.sustain_s == 60 and plan.window_s == 5 and "sustained for 60 s" in plan.describe()
    assert make_plan("cpu", MamfOptions(quick=True)).sustain_s == 0
    assert [sustain_window_s(s) for s in (2, 20, 60, 600)] == [0.5, 2.0, 5.0, 5.0]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(UsageError):
            make_plan("cpu", MamfOptions(sustain_s=bad))
    assert MamfOptions(sustain_s=60.0).to_argv() == ["--sustain", "60.0"]


def test_the_sustain_record_is_never_the_answer():
    def rec(tflops, **params):
        return {
            "probe": "mamf",
            "status": "ok",
            "params": {"m": 1, "n": 1, "k": 1, **params},
            "metrics": {"tflops": tflops},
        }

    sweep = rec(10.0, mode="sweep")
    assert best_record([sweep, rec(12.0, mode="sustain")]) is sweep


def test_acceptance_profiles_sustain_on_every_gpu_at_once():
    gpus = NodeLayout("g1", "cuda", 8)
    for profile, seconds in (("quick", None), ("standard", "60.0"), ("full", "600.0")):
        mamf = next(s for s in build(profile, gpus, "/d", "r", select(None, None)).steps if s.name == "mamf")
        assert len(mamf.processes) == 8 and mamf.concurrent
        for process in mamf.processes:
            args = list(process.args)
            assert (args[args.index("--sustain") + 1] if "--sustain" in args else None) == seconds
