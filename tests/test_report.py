"""The reporter's logic: loading, verdict rules, checks per probe, fleet outliers, the exit code."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")

from report_records import coll, disk, mamf, membw, write_jsonl  # noqa: E402

from mlbench import report  # noqa: E402
from mlbench.exitcodes import UsageError  # noqa: E402
from mlbench.report import verdicts  # noqa: E402
from mlbench.report.api import build_report, evaluate, load_registry  # noqa: E402
from mlbench.report.synthetic import FleetSpec, write_fleet  # noqa: E402
from mlbench.report.verdicts import Thresholds, Verdict  # noqa: E402


def judge(records, tmp_path, thresholds=None, specs_files=()):
    path = write_jsonl(tmp_path / "run" / "records.jsonl", records)
    frame = report.load([path])
    checks, fleet = evaluate(frame, load_registry(specs_files), thresholds or Thresholds())
    return checks, fleet


def one(checks, check, host="n1"):
    rows = checks[(checks["check"] == check) & (checks["host"] == host)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# -- verdict rules --------------------------------------------------------------------------------

TH = Thresholds()


def test_efficiency_of_the_h100_reference_passes():
    verdict, reason = verdicts.judge_efficiency(794.5, 989, 794.5 / 989, TH, "TFLOPS")
    assert verdict == Verdict.PASS
    assert "80.3% of the 989 TFLOPS spec" in reason


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.80 * 989 * 0.90, Verdict.PASS),  # exactly warn_below x normal
        (0.80 * 989 * 0.89, Verdict.WARN),  # "below spec but normal" has a margin, then WARN
        (0.80 * 989 * 0.75, Verdict.WARN),
        (0.80 * 989 * 0.74, Verdict.FAIL),
        (989 * 1.03, Verdict.WARN),  # above the physical peak: suspect, never silently accepted
    ],
)
def test_efficiency_bands(value, expected):
    assert verdicts.judge_efficiency(value, 989, 0.80, TH, "TFLOPS")[0] == expected


def test_busbw_above_line_rate_is_not_suspect():
    verdict, reason = verdicts.judge_efficiency(480, 450, 0.8, TH, "GB/s", above_line_rate_ok=True)
    assert verdict == Verdict.PASS and "NVLS" in reason


def test_without_spec_cpu_is_informational_unknown_accelerator_warns():
    assert verdicts.judge_without_spec("cpu", "AMD EPYC")[0] == Verdict.INFO
    verdict, reason = verdicts.judge_without_spec("cuda", "NVIDIA GeForce RTX 4090")
    assert verdict == Verdict.WARN and "--specs" in reason


def test_minimum_floor():
    th = Thresholds(minimum={"busbw.all_reduce": 460})
    assert verdicts.judge_minimum(Verdict.PASS, "ok", "busbw.all_reduce", 455, "GB/s", th)[0] == Verdict.FAIL
    assert verdicts.judge_minimum(Verdict.PASS, "ok", "busbw.all_reduce", 470, "GB/s", th)[0] == Verdict.PASS
    assert verdicts.judge_minimum(Verdict.WARN, "ok", "hbm", 1, "GB/s", th)[0] == Verdict.WARN  # no floor for it
    assert verdicts.judge_minimum(Verdict.INFO, "ok", "busbw.all_reduce", 470, "GB/s", th)[0] == Verdict.PASS
    assert verdicts.judge_minimum(Verdict.INFO, "ok", "hbm", 1, "GB/s", th)[0] == Verdict.INFO


def test_overall_verdict_prefers_judged_verdicts_over_info():
    assert verdicts.overall([Verdict.INFO, Verdict.PASS, Verdict.NA]) == Verdict.PASS
    assert verdicts.overall([Verdict.INFO, Verdict.NA]) == Verdict.INFO
    assert verdicts.overall([Verdict.PASS, Verdict.WARN, Verdict.INCOMPLETE]) == Verdict.INCOMPLETE
    assert verdicts.overall([Verdict.INCOMPLETE, Verdict.FAIL, Verdict.INFO]) == Verdict.FAIL
    assert verdicts.overall([]) == Verdict.NA


def test_exit_code_rule():
    assert verdicts.exit_code([Verdict.PASS, Verdict.WARN]) == 0
    assert verdicts.exit_code([Verdict.PASS, Verdict.FAIL]) == 1
    assert verdicts.exit_code([Verdict.PASS, Verdict.INCOMPLETE]) == 0
    assert verdicts.exit_code([Verdict.PASS, Verdict.INCOMPLETE], strict=True) == 1
    assert verdicts.exit_code([Verdict.INFO, Verdict.NA], strict=True) == 0  # never fatal


@pytest.mark.parametrize(
    "bad",
    [
        dict(warn_below=0.5, fail_below=0.8),
        dict(fleet_margin=1.5),
        dict(expect={"nope": 0.8}),
        dict(expect={"mamf": 80}),
    ],
)
def test_bad_thresholds_are_usage_errors(bad):
    with pytest.raises(UsageError):
        Thresholds(**bad)


def test_thresholds_from_mapping_rejects_unknown_keys():
    with pytest.raises(UsageError, match="unknown key"):
        Thresholds.from_mapping({"warn_bellow": 0.9})
    assert Thresholds.from_mapping({"require": ["mamf"], "strict": True}).require == ("mamf",)


# -- loading --------------------------------------------------------------------------------------


def test_load_is_tidy_and_tolerant(tmp_path):
    record = mamf(700.0)
    record["something_new"] = {"nested": True}
    record["params"]["future_param"] = 3
    path = write_jsonl(tmp_path / "a.jsonl", [record, membw("copy", 3000.0)])
    frame = report.load([tmp_path])
    assert len(frame) == 2
    assert {
        "probe",
        "host",
        "device_name",
        "device_index",
        "params.m",
        "metrics.tflops",
        "params.future_param",
        "metrics.gbps",
        "file",
    } <= set(frame.columns)
    assert frame.loc[frame["probe"] == "mamf", "metrics.tflops"].item() == 700.0
    assert frame["file"].unique().tolist() == [str(path)]


def test_truncated_and_corrupted_lines_give_one_warning_and_the_rest_is_read(tmp_path):
    import json

    lines = [
        json.dumps(mamf(700.0)),
        json.dumps(mamf(710.0, m=8192)),
        '{"schema": "mlbench/1", "probe": "ma',
        "\x00\x00garbage",
        json.dumps(mamf(720.0, m=2048)),
    ]
    path = tmp_path / "mamf.jsonl"
    path.write_text("\n".join(lines))  # the last line has no newline either
    said = []
    frame = report.load([path], on_warning=said.append)
    assert sorted(frame["metrics.tflops"]) == [700.0, 710.0, 720.0]
    assert len(said) == 1
    assert "2 unreadable line(s)" in said[0] and "first at line 3" in said[0] and str(path) in said[0]


def test_invalid_records_are_skipped_with_a_warning(tmp_path):
    bad = mamf(700.0)
    del bad["metrics"]["tflops"]
    said = []
    frame = report.load([write_jsonl(tmp_path / "m.jsonl", [bad, mamf(650.0)])], on_warning=said.append)
    assert frame["metrics.tflops"].tolist() == [650.0]
    assert len(said) == 1 and "metrics lacks 'tflops'" in said[0] and "1 invalid record(s) skipped" in said[0]


def test_load_missing_path_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        report.load([tmp_path / "nope"])


# -- checks per probe ------------------------------------------------------------------------------


def test_mamf_best_median_and_percentages(tmp_path):
    checks, _ = judge([mamf(700.0, m=2048), mamf(794.5, m=2048, n=2048, k=13312), mamf(780.0, m=8192)], tmp_path)
    r = one(checks, "mamf.bf16")
    assert r["value"] == 794.5 and r["at"] == "2048x2048x13312"
    assert r["pct_of_spec"] == pytest.approx(80.33, abs=0.01)
    assert r["pct_of_reference"] == pytest.approx(100.0)
    assert r["verdict"] == Verdict.PASS and r["spec"] == "h100-sxm"


def test_mamf_search_answer_is_the_best_confirmed_shape(tmp_path):
    checks, _ = judge(
        [
            mamf(800.0, m=1024, params={"mode": "search", "phase": "coarse"}),
            mamf(760.0, m=2048, params={"mode": "search", "phase": "confirm"}),
            mamf(770.0, m=4096, params={"mode": "search", "phase": "confirm"}),
        ],
        tmp_path,
    )
    assert one(checks, "mamf.bf16")["value"] == 770.0


def test_mamf_slow_gpu_fails_and_unknown_device_warns(tmp_path):
    checks, _ = judge([mamf(500.0), mamf(100.0, host="n2", name="NVIDIA Z999")], tmp_path)
    slow = one(checks, "mamf.bf16")
    assert slow["verdict"] == Verdict.FAIL and "50.6% of the 989" in slow["reason"]
    unknown = one(checks, "mamf.bf16", host="n2")
    assert unknown["verdict"] == Verdict.WARN and pd.isna(unknown["pct_of_spec"])


def test_mamf_flags_make_warnings_and_failed_checks_fail(tmp_path):
    checks, _ = judge(
        [
            mamf(790.0, flags=["noisy"]),
            mamf(790.0, host="n2", flags=["above_spec_peak"]),
            mamf(790.0, host="n3", status="error", error="wrong result", flags=["check_failed"]),
            mamf(790.0, host="n3", m=8192),
        ],
        tmp_path,
    )
    assert one(checks, "mamf.bf16")["verdict"] == Verdict.WARN
    assert "faster than the advertised peak" in one(checks, "mamf.bf16", "n2")["reason"]
    assert one(checks, "mamf.bf16", "n3")["verdict"] == Verdict.FAIL


def test_expected_efficiency_override(tmp_path):
    records = [mamf(650.0)]  # 65.7% of peak: WARN against the normal 80.3%
    assert one(judge(records, tmp_path)[0], "mamf.bf16")["verdict"] == Verdict.WARN
    checks, _ = judge(records, tmp_path, Thresholds(expect={"mamf": 0.7}))
    assert one(checks, "mamf.bf16")["verdict"] == Verdict.PASS


def test_incomplete_when_a_probe_errored_or_was_skipped_on_an_accelerator(tmp_path):
    checks, _ = judge(
        [
            mamf(0, status="error", error="CUDA error: illegal address"),
            mamf(0, dtype="fp8", status="skipped", error="fp8 needs torch >= 2.5"),
            membw("copy", 3000.0),
        ],
        tmp_path,
    )
    bad = one(checks, "mamf.bf16")
    assert bad["verdict"] == Verdict.INCOMPLETE and "1 error" in bad["reason"] and "illegal address" in bad["reason"]
    assert one(checks, "mamf.fp8")["verdict"] == Verdict.INCOMPLETE


def test_missing_probe_on_one_device_is_incomplete(tmp_path):
    checks, _ = judge([mamf(790.0), membw("copy", 3000.0), membw("copy", 3000.0, index=1)], tmp_path)
    missing = checks[(checks["check"] == "mamf") & (checks["device"] == "1")]
    assert missing["verdict"].tolist() == [Verdict.INCOMPLETE]
    required, _ = judge([mamf(790.0)], tmp_path, Thresholds(require=("diskio",)))
    assert one(required, "diskio", host="*")["verdict"] == Verdict.INCOMPLETE


def test_cpu_smoke_run_is_informational_and_h2d_not_measured(tmp_path):
    cpu = dict(name="AMD EPYC", dev_type="cpu")
    checks, _ = judge(
        [
            mamf(0.05, **cpu),
            membw("copy", 30.0, **cpu),
            membw("h2d", 0, size=0, status="skipped", error="h2d needs an accelerator", **cpu),
            coll("all_reduce", 1 << 20, 0.0, world=1, backend="gloo", **cpu),
            disk("seqread", 1.2),
        ],
        tmp_path,
    )
    got = dict(zip(checks["check"], checks["verdict"]))
    assert got == {
        "mamf.bf16": "INFO",
        "hbm": "INFO",
        "h2d": "N/A",
        "busbw.all_reduce": "INFO",
        "storage.seqread": "INFO",
    }, checks[["check", "verdict", "reason"]]
    assert one(checks, "h2d")["reason"] == "not applicable on cpu: h2d needs an accelerator"
    assert pd.isna(one(checks, "h2d")["value"])
    assert verdicts.exit_code(checks["verdict"], strict=True) == 0


def test_a_floor_judges_an_informational_figure(tmp_path):
    cpu = dict(name="AMD EPYC", dev_type="cpu")
    records = [mamf(0.05, **cpu), disk("seqread", 1.2)]
    checks, _ = judge(records, tmp_path, Thresholds(minimum={"mamf.bf16": 0.04, "storage.seqread": 2.0}))
    assert (
        one(checks, "mamf.bf16")["verdict"] == Verdict.PASS
        and "meets the required 0.04" in one(checks, "mamf.bf16")["reason"]
    )
    assert one(checks, "storage.seqread")["verdict"] == Verdict.FAIL


def test_not_runnable_on_an_accelerator_is_not_measured_but_a_skip_for_memory_is_incomplete(tmp_path):
    checks, _ = judge(
        [
            membw("copy", 3000.0),
            membw("p2p", 0, size=0, status="skipped", error="p2p needs two or more CUDA/ROCm GPUs; 1 visible on cuda"),
            mamf(790.0),
            mamf(0, dtype="fp8", m=0, n=0, k=0, status="skipped", error="no fp8 on this GPU"),
            mamf(0, dtype="fp16", status="skipped", error="out of memory at 4096x4096x4096"),
        ],
        tmp_path,
    )
    p2p = one(checks, "p2p")
    assert p2p["verdict"] == Verdict.NA and p2p["reason"].startswith("not applicable on cuda: p2p needs two")
    assert one(checks, "mamf.fp8")["verdict"] == Verdict.NA
    assert one(checks, "mamf.fp16")["verdict"] == Verdict.INCOMPLETE


def test_membw_hbm_uses_read_plus_written_and_h2d_bytes_once(tmp_path):
    checks, _ = judge(
        [
            membw("copy", 3000.0, copied=1500.0),
            membw("triad", 2900.0, size=1 << 28),
            membw("h2d", 106.0, copied=53.0),
            membw("d2h", 25.0),
        ],
        tmp_path,
    )
    hbm = one(checks, "hbm")
    assert hbm["value"] == 3000.0 and hbm["spec_value"] == 3350.0 and hbm["at"] == "copy 1GiB"
    assert hbm["pct_of_spec"] == pytest.approx(89.55, abs=0.01) and hbm["verdict"] == Verdict.PASS
    h2d = one(checks, "h2d")
    assert h2d["value"] == 53.0 and h2d["spec_value"] == 63 and h2d["verdict"] == Verdict.PASS
    assert one(checks, "d2h")["verdict"] == Verdict.FAIL  # 25 of 63 GB/s: 39.7%, half the normal 80%


def test_collectives_peak_half_size_latency_and_link(tmp_path):
    sizes = [1 << p for p in range(10, 31, 4)]  # 1 KiB .. 1 GiB
    records = [coll("all_reduce", s, 370.0 * s / (s + (16 << 20))) for s in sizes]
    records.append(coll("all_reduce", 1 << 10, 0.0, time_us=25.0, extra={"mode": "latency"}))
    records.append(coll("all_reduce", 1 << 30, 200.0, rank=1))  # the slowest rank's figure counts per size
    checks, _ = judge(records, tmp_path)
    r = one(checks, "busbw.all_reduce")
    per_size = {s: 370.0 * s / (s + (16 << 20)) for s in sizes}
    per_size[1 << 30] = 200.0
    peak_size = max(per_size, key=per_size.get)
    assert r["value"] == pytest.approx(per_size[peak_size])
    assert r["half_peak_bytes"] == min(s for s, v in per_size.items() if v >= per_size[peak_size] / 2)
    assert r["small_latency_us"] == 25.0
    assert r["spec_value"] == 450 and r["pct_of_spec"] == pytest.approx(100 * per_size[peak_size] / 450)


def test_collective_wrong_elements_fail(tmp_path):
    checks, _ = judge([coll("all_gather", 1 << 20, 300.0), coll("all_gather", 1 << 26, 360.0, errors=3)], tmp_path)
    r = one(checks, "busbw.all_gather")
    assert r["verdict"] == Verdict.FAIL and r["errors"] == 3 and "3 wrong element" in r["reason"]


def test_collectives_across_nodes_and_one_rank_are_informational(tmp_path):
    checks, _ = judge(
        [
            coll("all_reduce", 1 << 30, 45.0, world=16, extra={"nodes": 2}),
            coll("all_reduce", 1 << 20, 0.0, world=1, host="n2"),
        ],
        tmp_path,
    )
    assert "spans nodes" in one(checks, "busbw.all_reduce")["reason"]
    assert "1 rank" in one(checks, "busbw.all_reduce", "n2")["reason"]
    assert set(checks["verdict"]) == {Verdict.INFO}
    floored, _ = judge(
        [coll("all_reduce", 1 << 30, 45.0, world=16, extra={"nodes": 2})],
        tmp_path,
        Thresholds(minimum={"busbw.all_reduce": 40}),
    )
    assert one(floored, "busbw.all_reduce")["verdict"] == Verdict.PASS


def test_storage_modes_buffered_and_floors(tmp_path):
    records = [
        disk("seqread", 1.8, jobs=4),
        disk("seqread", 1.2, p99=900.0),
        disk("randread", 0.24, block=4096, p99=80.0),
        disk("seqwrite", 9.0, direct=False),
    ]
    checks, _ = judge(records, tmp_path, Thresholds(minimum={"storage.randread": 0.5}))
    seq = one(checks, "storage.seqread")
    assert seq["value"] == 1.8 and seq["lat_us_p99"] == 500.0 and seq["verdict"] == Verdict.INFO and bool(seq["direct"])
    assert one(checks, "storage.randread")["verdict"] == Verdict.FAIL
    buffered = one(checks, "storage.seqwrite.buffered")
    assert buffered["verdict"] == Verdict.WARN and "page cache" in buffered["reason"]


# -- fleet ----------------------------------------------------------------------------------------


def test_synthetic_fleet_finds_the_slow_node_and_the_slow_gpu(tmp_path):
    run_dir = write_fleet(
        tmp_path, FleetSpec(nodes=8, gpus=4, probes=("mamf", "membw"), slow={"node0005": 0.8, ("node0002", 3): 0.85})
    )
    result = build_report([run_dir], out_dir=tmp_path / "out", plots=False)
    v = result.verdicts
    suspects = v[v["check"].str.startswith("fleet:")]
    # a whole slow node, and a node whose ceiling (its slowest GPU) is 15% below the fleet's
    assert set(suspects["host"]) == {"node0005", "node0002"}
    assert set(suspects.loc[suspects["host"] == "node0005", "check"]) == {
        "fleet:mamf.bf16",
        "fleet:hbm",
        "fleet:h2d",
        "fleet:d2h",
    }
    assert set(suspects["verdict"]) == {Verdict.FAIL}
    spread = v[v["check"].str.startswith("spread:")]  # only the lone slow GPU is far from its siblings
    assert set(zip(spread["host"], spread["device"])) == {("node0002", "3")}
    fleet = result.fleet
    row = fleet[(fleet["check"] == "mamf.bf16") & (fleet["host"] == "node0002")].iloc[0]
    assert row["slowest_device"] == "3" and row["spread_pct"] > 10
    assert fleet.loc[fleet["check"] == "mamf.bf16", "suspect"].sum() == 2
    assert fleet.loc[fleet["host"] == "node0005", "robust_z"].max() < -3
    assert result.exit_code == 1


def test_healthy_fleet_passes(tmp_path):
    run_dir = write_fleet(tmp_path, FleetSpec(nodes=5, gpus=2))
    result = build_report([run_dir], out_dir=tmp_path / "out", plots=False)
    v = result.verdicts
    judged = v[~v["check"].str.startswith("storage.")]  # storage has no spec: informational
    assert set(judged["verdict"]) == {Verdict.PASS}, judged.query("verdict != 'PASS'")[["check", "reason"]]
    assert set(v.loc[v["check"].str.startswith("storage."), "verdict"]) == {Verdict.INFO}
    assert result.exit_code == 0
    assert len(result.records) == 5 * 2 * (12 + 36) + 5 * (44 + 16)


def test_no_records_is_usage_error_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no records"):
        build_report([empty])
    assert list(empty.iterdir()) == []
