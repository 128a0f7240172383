"""Each probe's rules are defined once, in its plan, and the reporter applies the same ones.

membw: which points are large (the peak's candidates) and which family an op belongs to; mamf: which
record is a run's answer; collectives: the busbw factors the synthetic fleet uses. Plus the types
the reporter now speaks in: the Verdict enum and the check row whose fields are the CSV columns.
"""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")

from report_records import mamf, rec, write_jsonl  # noqa: E402

from mlbench.collectives.plan import OPS as COLLECTIVE_OPS  # noqa: E402
from mlbench.mamf.plan import best_record  # noqa: E402
from mlbench.membw import plan as P  # noqa: E402
from mlbench.report import load  # noqa: E402
from mlbench.report.api import build_report, evaluate, load_registry  # noqa: E402
from mlbench.report.checks import COLUMNS, CheckRow, rows_frame  # noqa: E402
from mlbench.report.checks.membw import families  # noqa: E402
from mlbench.report.render import sections, summary_lines  # noqa: E402
from mlbench.report.synthetic import FleetSpec, node_records  # noqa: E402
from mlbench.report.verdicts import Thresholds, Verdict, exit_code  # noqa: E402

MiB = 1 << 20
CPU = dict(name="AMD EPYC", dev_type="cpu")


def judge(records, tmp_path):
    frame = load([write_jsonl(tmp_path / "run" / "records.jsonl", records)])
    return evaluate(frame, load_registry(), Thresholds())[0]


def only(checks, check):
    rows = checks[checks["check"] == check]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# -- membw: large buffers ------------------------------------------------------------------------


def test_large_buffer_rule_in_plain_values():
    llc = 32 * MiB  # copy: two buffers per set, so large from 4 x 32 / 2 = 64 MiB per buffer
    assert P.is_large_buffer("copy", 64 * MiB, llc) and not P.is_large_buffer("copy", 64 * MiB - 4096, llc)
    assert P.is_large_buffer("read", 128 * MiB, llc) and not P.is_large_buffer("read", 64 * MiB, llc)
    assert P.is_large_buffer("triad", 43 * MiB, llc) and not P.is_large_buffer("triad", 42 * MiB, llc)  # 3 buffers
    assert not P.is_large_buffer("h2d", 8 << 30, llc) and not P.is_large_buffer("p2p", 8 << 30, llc)
    assert P.is_large_buffer("copy", 64 * MiB, None) == P.is_large_buffer("copy", 64 * MiB, P.DEFAULT_LLC_BYTES)


@pytest.mark.parametrize("op", P.DEVICE_OPS)
def test_large_is_exactly_when_rotation_needs_one_set(op):
    llc = 50 * MiB
    for size in [P.buffer_bytes(int(llc * f)) for f in (0.05, 0.5, 1.0, 1.33, 1.34, 1.99, 2.0, 3.99, 4.0, 4.01, 16)]:
        one_set = P.rotation_sets(P.OPS[op], size, llc) == 1
        assert P.is_large_buffer(op, size, llc) == one_set, (op, size)


def test_a_recorded_large_fact_wins_over_the_rule():
    record = {"status": "ok", "params": {"op": "copy", "bytes": 1 << 30, "large": False}, "metrics": {"gbps": 1.0}}
    assert not P.is_large(record, 32 * MiB)
    del record["params"]["large"]
    assert P.is_large(record, 32 * MiB)


def probe_record(point: P.Point, llc_bytes: int, gbps: float) -> dict:
    """A record with the params the membw probe writes for this point (see BandwidthProbe._result)."""
    params = {
        **point.params(),
        "dtype": "float32",
        "sets": point.sets,
        "footprint_bytes": point.device_bytes,
        "cache_resident": point.cache_resident(llc_bytes),
        "large": P.is_large_buffer(point.op, point.bytes, llc_bytes),
        "family": point.spec.family.value,
    }
    return rec("membw", params, {"gbps": gbps, "time_ms": 1.0}, **CPU)


def test_no_rotate_between_one_and_four_caches_the_report_agrees_with_the_plan(tmp_path):
    llc = 32 * MiB
    # --no-rotate: one set each. 8 MiB copies fit the cache (16 MiB), 24 MiB ones do not (48 MiB, under
    # 4x the cache: not large), 64 MiB ones are large (128 MiB = 4x). The middle one is the fastest.
    points = [P.Point("copy", 8 * MiB, 1), P.Point("copy", 24 * MiB, 1), P.Point("copy", 64 * MiB, 1)]
    records = [probe_record(p, llc, gbps) for p, gbps in zip(points, (9000.0, 5000.0, 3000.0))]
    assert [r["params"]["cache_resident"] for r in records] == [True, False, False]
    assert [r["params"]["large"] for r in records] == [False, False, True]
    best, from_large = P.peaks(records, llc)
    assert from_large and best["copy"]["params"]["bytes"] == 64 * MiB
    hbm = only(judge(records, tmp_path), "hbm")
    assert hbm["value"] == best["copy"]["metrics"]["gbps"] == 3000.0 and hbm["at"] == "copy 64MiB"


def test_rotated_points_large_only_when_one_set_outsizes_the_cache(tmp_path):
    llc = 32 * MiB
    points = [
        P.Point(op, size, P.rotation_sets(P.OPS[op], size, llc))
        for op, size in (("read", 16 * MiB), ("read", 256 * MiB), ("triad", 8 * MiB), ("triad", 64 * MiB))
    ]
    records = [probe_record(p, llc, gbps) for p, gbps in zip(points, (800.0, 100.0, 700.0, 120.0))]
    assert [p.sets for p in points] == [8, 1, 6, 1]
    best, _ = P.peaks(records, llc)
    hbm = only(judge(records, tmp_path), "hbm")
    assert hbm["value"] == max(r["metrics"]["gbps"] for r in best.values()) == 120.0


# -- membw: families -----------------------------------------------------------------------------


def test_every_op_has_its_family_once():
    assert {name: op.family for name, op in P.OPS.items()} == {
        "copy": "hbm",
        "read": "hbm",
        "write": "hbm",
        "triad": "hbm",
        "h2d": "h2d",
        "d2h": "d2h",
        "p2p": "p2p",
    }
    assert P.op_family("p2p") is P.Family.P2P and P.op_family("something new") is P.Family.HBM


def test_report_reads_the_recorded_family_else_the_plans():
    d = pd.DataFrame({"params.op": ["copy", "h2d", "p2p", "d2h"], "params.family": ["hbm", None, "p2p", "bogus"]})
    assert families(d).tolist() == ["hbm", "h2d", "p2p", "d2h"]
    assert families(d.drop(columns="params.family")).tolist() == ["hbm", "h2d", "p2p", "d2h"]


def test_transfer_and_peer_records_are_checked_under_their_family(tmp_path):
    records = [
        rec(
            "membw",
            {"op": op, "bytes": 1 << 30, "family": P.OPS[op].family.value},
            {"gbps": 2 * gbps, "gbps_copied": gbps, "time_ms": 1.0},
        )
        for op, gbps in (("h2d", 53.0), ("d2h", 50.0), ("p2p", 380.0))
    ]
    checks = judge(records, tmp_path)
    assert {c: only(checks, c)["value"] for c in ("h2d", "d2h", "p2p")} == {"h2d": 53.0, "d2h": 50.0, "p2p": 380.0}
    assert only(checks, "d2h")["spec_value"] == 63 and only(checks, "p2p")["spec_value"] == 450


# -- mamf: the answer ------------------------------------------------------------------------------


def test_report_and_best_record_pick_the_same_record_on_a_mixed_search_and_sweep_set(tmp_path):
    records = [
        mamf(900.0, m=8192, params={"mode": "sweep"}),
        mamf(950.0, m=1024, params={"mode": "search", "phase": "coarse"}),
        mamf(930.0, m=2048, params={"mode": "search", "phase": "refine"}),
        mamf(760.0, m=4096, params={"mode": "search", "phase": "confirm"}),
        mamf(770.0, m=6144, params={"mode": "search", "phase": "confirm"}),
        mamf(0, m=16384, status="skipped", error="out of memory"),
    ]
    best = best_record(records)
    assert best["metrics"]["tflops"] == 770.0  # confirmed shapes only: neither the sweep nor a short run wins
    r = only(judge(records, tmp_path), "mamf.bf16")
    assert (r["value"], r["at"]) == (770.0, "6144x4096x4096")
    sweep_only = [r for r in records if r["params"].get("mode") != "search"]
    assert best_record(sweep_only)["metrics"]["tflops"] == 900.0
    assert only(judge(sweep_only, tmp_path), "mamf.bf16")["value"] == 900.0


def test_the_answer_is_chosen_per_device_and_dtype(tmp_path):
    confirmed_on_0 = mamf(700.0, params={"mode": "search", "phase": "confirm"})
    sweep_on_1 = mamf(800.0, index=1, params={"mode": "sweep"})
    checks = judge([confirmed_on_0, mamf(900.0, params={"phase": "coarse"}), sweep_on_1], tmp_path)
    mamf_rows = checks[checks["check"] == "mamf.bf16"]
    assert dict(zip(mamf_rows["device"], mamf_rows["value"])) == {"0": 700.0, "1": 800.0}


# -- collectives: the synthetic fleet's busbw factors ------------------------------------------------


@pytest.mark.parametrize(
    "gpus, factor", [(2, {"all_reduce": 1.0, "all_gather": 0.5}), (8, {"all_reduce": 1.75, "all_gather": 0.875})]
)
def test_synthetic_collectives_use_the_plans_busbw_factors(gpus, factor):
    records = node_records(FleetSpec(nodes=1, gpus=gpus, probes=("collectives",)), 0)["collectives"]
    for r in records:
        m = r["metrics"]
        op = r["params"]["op"]
        assert m["busbw_gbps"] == pytest.approx(m["algbw_gbps"] * COLLECTIVE_OPS[op].busbw_factor(gpus))
        if op in factor:
            assert m["busbw_gbps"] / m["algbw_gbps"] == pytest.approx(factor[op])


def test_synthetic_one_gpu_fleet_has_no_bus_traffic():
    records = node_records(FleetSpec(nodes=1, gpus=1, probes=("collectives",)), 0)["collectives"]
    assert {r["metrics"]["busbw_gbps"] for r in records} == {0.0}


# -- types: verdicts and check rows ----------------------------------------------------------------


def test_check_row_fields_are_the_summary_csv_columns_in_order(tmp_path):
    assert COLUMNS == (
        "host",
        "device",
        "device_type",
        "device_name",
        "spec",
        "probe",
        "check",
        "value",
        "unit",
        "at",
        "spec_value",
        "pct_of_spec",
        "expected_pct",
        "reference",
        "pct_of_reference",
        "verdict",
        "reason",
        "half_peak_bytes",
        "small_latency_us",
        "errors",
        "iops",
        "lat_us_p99",
        "direct",
    )
    write_jsonl(tmp_path / "in" / "m.jsonl", [mamf(790.0)])
    build_report([tmp_path / "in"], out_dir=tmp_path / "out", plots=False)
    header = (tmp_path / "out" / "summary.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)


def test_verdicts_are_a_str_enum_written_as_plain_names(tmp_path):
    assert [v.value for v in Verdict] == ["FAIL", "INCOMPLETE", "WARN", "INFO", "PASS", "N/A"]
    assert Verdict.FAIL == "FAIL" and f"{Verdict.WARN}" == "WARN" and str(Verdict.INFO) == "INFO"
    rows = [
        CheckRow(
            host="n1", device="0", probe="mamf", check="mamf.bf16", value=1.0, verdict=Verdict.INFO, reason="a figure"
        ),
        CheckRow(host="n1", device="1", probe="mamf", check="mamf.bf16", verdict=Verdict.PASS, reason="ok"),
    ]
    frame = rows_frame(rows)
    frame.to_csv(tmp_path / "v.csv", index=False)
    assert [
        line.split(",")[COLUMNS.index("verdict")] for line in (tmp_path / "v.csv").read_text().splitlines()[1:]
    ] == ["INFO", "PASS"]
    assert frame["verdict"].map(type).tolist() == [str, str]


def test_info_is_listed_never_fatal_and_needs_no_attention():
    rows = rows_frame(
        [
            CheckRow(
                host="n1",
                device="0",
                probe="mamf",
                check="mamf.bf16",
                value=1.0,
                unit="TFLOPS",
                verdict=Verdict.INFO,
                reason="a figure",
            )
        ]
    )
    assert exit_code(rows["verdict"], strict=True) == 0
    records = pd.DataFrame(
        {"run_id": ["r1"], "host": ["n1"], "device_index": [0], "probe": ["mamf"], "status": ["ok"], "file": ["f"]}
    )
    summary = summary_lines(records, rows, [], 0)
    assert (
        summary[0] == "**Verdict: INFO** (exit 0): nothing judged (no spec or floor to judge against); 1 informational."
    )
    attention = next(s for s in sections(rows, None, []) if s.title == "Needs attention")
    assert attention.rows == [] and attention.notes[0].startswith("Nothing was judged: 1 informational figure")


# -- collectives: the probe's above-link rule is the report's ----------------------------------------


@pytest.mark.parametrize(
    "op, busbw, suspect",
    [
        ("all_reduce", 480.0, False),  # NVLS on 8 x H100: above the 450 link figure, within 2(n-1)/(n+1) x 450 = 700
        ("all_reduce", 720.0, True),
        ("all_gather", 480.0, True),  # nothing sums in the switch: above the link is suspect
        ("all_gather", 400.0, False),
    ],
)
def test_report_and_probe_agree_on_busbw_above_the_link(tmp_path, op, busbw, suspect):
    from report_records import coll

    from mlbench.collectives.plan import above_link_spec

    assert above_link_spec(op, busbw, 8, 450.0) is suspect
    records = [coll(op, size, busbw) for size in (1 << 20, 1 << 30)]
    row = only(judge(records, tmp_path), f"busbw.{op}")
    assert (row["verdict"] == "WARN") is suspect, row["reason"]
    assert row["verdict"] in ("PASS", "WARN")
