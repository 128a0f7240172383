"""The report's training checks: MFU against the expected MFU for the part and preset, INFO without a peak or an
expected figure, a loss that did not go down, the scaling efficiency of a job, and the fleet view's slow node."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")

from report_records import H100, rec, write_jsonl  # noqa: E402

from mlbench import report  # noqa: E402
from mlbench.report.api import build_report, evaluate, load_registry  # noqa: E402
from mlbench.report.verdicts import Thresholds, Verdict  # noqa: E402

PEAK = 989.0  # H100 SXM dense bf16 TFLOPS (registry)
EXPECTED = 0.418  # H100 SXM, preset 1b (mlbench/data/train_mfu.csv)


def train(
    tflops,
    *,
    world=1,
    node="n1",
    gpu=0,
    model="1b",
    parallel=None,
    efficiency=None,
    loss=(11.8, 7.0),
    status="ok",
    error=None,
    flags=None,
    **kw,
):
    params = {
        "model": model,
        "params_count": 1_336_477_696,
        "seq_len": 2048,
        "global_batch_tokens": 8192 * world,
        "parallel": parallel or ("none" if world == 1 else "ddp"),
        "world_size": world,
        "dtype": "bf16",
        "nodes": 1,
    }
    if world == 1:
        params.update(node=node, gpu=gpu, gpu_rank=gpu, device_name=kw.get("name", H100))
    metrics = {
        "tokens_per_s": 1e4 * world,
        "tflops_per_gpu": tflops,
        "mfu": tflops / PEAK,
        "step_ms": 800.0,
        "loss_first": loss[0],
        "loss_last": loss[1],
        "scaling_efficiency": efficiency,
    }
    return rec(
        "train",
        params,
        metrics,
        host=kw.pop("host", node),
        index=gpu,
        status=status,
        error=error,
        flags=flags,
        world_size=kw.pop("world_size", world),
        **kw,
    )


def judge(records, tmp_path):
    frame = report.load([write_jsonl(tmp_path / "run" / "train.jsonl", records)])
    checks, fleet = evaluate(frame, load_registry(()), Thresholds())
    return checks, fleet


def row(checks, check, host="n1", device=None):
    rows = checks[(checks["check"] == check) & (checks["host"] == host)]
    if device is not None:
        rows = rows[rows["device"] == device]
    assert len(rows) == 1, rows
    return rows.iloc[0]


@pytest.mark.parametrize(
    "mfu_ratio, verdict", [(1.0, Verdict.PASS), (0.92, Verdict.PASS), (0.85, Verdict.WARN), (0.6, Verdict.FAIL)]
)
def test_mfu_is_judged_against_the_expected_mfu_of_the_part_and_preset(tmp_path, mfu_ratio, verdict):
    tflops = PEAK * EXPECTED * mfu_ratio
    checks, _ = judge([train(tflops)], tmp_path)
    r = row(checks, "train.1b")
    assert r["verdict"] == verdict, r["reason"]
    assert r["pct_of_spec"] == pytest.approx(100 * tflops / PEAK)
    assert r["expected_pct"] == pytest.approx(100 * EXPECTED)
    assert r["spec"] == "h100-sxm" and r["reason"].startswith("MFU")


def test_info_without_a_peak_or_without_an_expected_mfu(tmp_path):
    records = [
        train(0.01, model="tiny", name="AMD EPYC", dev_type="cpu"),
        train(0.005, model="tiny", gpu=1, name="AMD EPYC", dev_type="cpu"),  # a second rank on the same CPU
        train(400.0, model="tiny", node="n2"),  # a known part, no expected MFU for the preset
        train(400.0, node="n3", name="Mystery Accelerator"),
    ]
    checks, _ = judge(records, tmp_path)
    cpu, no_expected, unknown = (
        row(checks, "train.tiny"),
        row(checks, "train.tiny", "n2"),
        row(checks, "train.1b", "n3"),
    )
    assert (cpu["verdict"], no_expected["verdict"], unknown["verdict"]) == (Verdict.INFO,) * 3
    assert "on cpu" in cpu["reason"] and cpu["value"] == 0.01 and cpu["device"] == "0"  # the CPU's best rank
    assert "no expected MFU" in no_expected["reason"] and no_expected["pct_of_spec"] == pytest.approx(100 * 400 / PEAK)
    assert "--specs" in unknown["reason"]


def test_a_loss_that_did_not_go_down_fails(tmp_path):
    bad = train(
        420.0,
        loss=(11.8, 11.9),
        status="error",
        error="the loss did not go down (first step 11.8, last 11.9)",
        flags=["loss_not_decreasing"],
    )
    checks, _ = judge([bad], tmp_path)
    r = row(checks, "train.1b")
    assert r["verdict"] == Verdict.FAIL and "did not go down" in r["reason"]


def test_a_job_row_carries_its_scaling_efficiency(tmp_path):
    good = PEAK * EXPECTED
    records = [
        train(good, world=8, efficiency=0.97, run_id="a"),
        train(good, world=8, efficiency=0.85, run_id="b", host="n2"),
        train(good, world=16, parallel="fsdp", efficiency=0.5, run_id="c", host="n3"),
    ]
    checks, _ = judge(records, tmp_path)
    fine, low, poor = (
        row(checks, "train.1b.ddp.8"),
        row(checks, "train.1b.ddp.8", "n2"),
        row(checks, "train.1b.fsdp.16", "n3"),
    )
    assert fine["verdict"] == Verdict.PASS and "scaling efficiency 97.0%" in fine["reason"]
    assert low["verdict"] == Verdict.WARN and "below the 90% expected" in low["reason"]
    assert poor["verdict"] == Verdict.FAIL and fine["device"] == "node"


def test_the_fleet_view_names_the_slow_node(tmp_path):
    good = PEAK * EXPECTED
    records = [
        train(
            good * (0.8 if node == "n3" else 1.0) * (0.85 if (node, gpu) == ("n1", 1) else 1.0),
            node=node,
            gpu=gpu,
            host="n0",
            rank=0,
            world_size=8,
        )
        for node in ("n0", "n1", "n2", "n3")
        for gpu in (0, 1)
    ]  # one job's records, written by its rank 0
    result = build_report(
        [write_jsonl(tmp_path / "run" / "train.jsonl", records)], out_dir=tmp_path / "out", plots=False
    )
    v = result.verdicts
    suspects = v[v["check"].eq("fleet:train.1b")]
    assert list(suspects["host"]) == ["n3"] and set(suspects["verdict"]) == {Verdict.FAIL}
    spread = v[v["check"].eq("spread:train.1b")]
    assert list(zip(spread["host"], spread["device"])) == [("n1", "1")]
    assert result.exit_code == 1
    assert (tmp_path / "out" / "summary.csv").read_text().count("train.1b") >= 8
