"""The report's burn-in checks and the sustained MAMF row, from hand-written records."""

import pytest

pd = pytest.importorskip("pandas")

from report_records import H100, mamf, rec, write_jsonl  # noqa: E402

from mlbench.report import load  # noqa: E402
from mlbench.report.api import evaluate, load_registry  # noqa: E402
from mlbench.report.verdicts import Thresholds  # noqa: E402

GOOD, BAD = "a" * 64, "b" * 64


def burn(index, tflops, *, digest=GOOD, status="ok", error=None, interval=1, host="n1", mismatches=0, **kw):
    params = {
        "dtype": "bf16",
        "interval": interval,
        "m": 8192,
        "n": 8192,
        "k": 8192,
        "library": "torch 2.6, cuda 12.4",
        "counters_backend": "nvml",
        "duration_s": 60.0,
    }
    metrics = {
        "tflops": tflops,
        "iterations": 100,
        "mismatches": mismatches,
        "result_sha256": digest,
        "pattern_bytes": 100 << 30,
        "pattern_errors": 0,
        "elapsed_s": 6.0 * interval,
        "counter_growth": 0,
    }
    return rec("burn", params, metrics, index=index, status=status, error=error, host=host, **kw)


def checks(records, tmp_path):
    frame = load([write_jsonl(tmp_path / "run" / "records.jsonl", records)])
    table = evaluate(frame, load_registry(), Thresholds())[0]
    return table[table["check"] == "burn"].set_index("device")


def test_clean_gpus_pass(tmp_path):
    rows = checks([burn(i, 700.0, interval=n) for i in range(4) for n in (1, 2)], tmp_path)
    assert list(rows["verdict"]) == ["PASS"] * 4
    row = rows.loc["0"]
    assert row["value"] == 700.0 and row["unit"] == "TFLOPS" and row["at"] == "bf16 8192x8192x8192"
    assert "clean" in row["reason"] and "2 interval(s)" in row["reason"] and "200 iterations" in row["reason"]


def test_an_error_record_fails_its_gpu_with_its_words(tmp_path):
    error = "n1 cuda:2 (H100): iteration 17: the 8192x8192 result differs bit for bit from the first one"
    records = [burn(i, 700.0) for i in range(4)] + [
        burn(2, 700.0, interval=2, status="error", error=error, mismatches=3, flags=["check_failed"])
    ]
    rows = checks(records, tmp_path)
    assert rows.loc["2", "verdict"] == "FAIL" and "iteration 17" in rows.loc["2", "reason"]
    assert rows.loc["2", "reason"].startswith("1 of 2 interval(s) failed") and rows.loc["2", "errors"] == 3
    assert set(rows.drop(index="2")["verdict"]) == {"PASS"}


def test_the_gpu_whose_result_differs_from_the_others_fails(tmp_path):
    rows = checks([burn(i, 700.0, digest=BAD if i == 1 else GOOD) for i in range(4)], tmp_path)
    assert rows.loc["1", "verdict"] == "FAIL" and "differ bit for bit" in rows.loc["1", "reason"]
    assert "3 GPU(s) agree with each other, 1 with this one" in rows.loc["1", "reason"]
    assert set(rows.drop(index="1")["verdict"]) == {"PASS"}
    # two GPUs that disagree: no majority, both are named
    pair = checks([burn(0, 700.0), burn(1, 700.0, digest=BAD)], tmp_path / "pair")
    assert list(pair["verdict"]) == ["FAIL", "FAIL"] and "cannot tell which" in pair.loc["0", "reason"]
    # another model (or library) computes other bits: not a disagreement
    other = checks([burn(0, 700.0), burn(1, 700.0, digest=BAD, name="NVIDIA H200")], tmp_path / "other")
    assert list(other["verdict"]) == ["PASS", "PASS"]


def test_a_gpu_much_slower_than_its_siblings_is_named(tmp_path):
    rows = checks([burn(i, 560.0 if i == 3 else 700.0) for i in range(4)], tmp_path)
    assert rows.loc["3", "verdict"] == "WARN" and "20% slower than the median of the other" in rows.loc["3", "reason"]
    assert H100 in rows.loc["3", "reason"]
    assert set(rows.drop(index="3")["verdict"]) == {"PASS"}


def test_sustained_row_shows_the_drop_and_warns_on_a_large_one(tmp_path):
    def sustained(index, tflops, burst):
        params = {"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16", "mode": "sustain"}
        metrics = {
            "tflops": tflops,
            "tflops_mean": tflops,
            "tflops_max": tflops,
            "time_ms": 1.0,
            "tflops_sustained": tflops,
            "tflops_burst": burst,
            "drop_pct": 100 * (1 - tflops / burst),
        }
        return rec("mamf", params, metrics, index=index)

    records = [mamf(800.0, index=i) for i in range(2)] + [sustained(0, 790.0, 800.0), sustained(1, 640.0, 800.0)]
    frame = load([write_jsonl(tmp_path / "run" / "records.jsonl", records)])
    table = evaluate(frame, load_registry(), Thresholds())[0]
    rows = table[table["check"] == "mamf.bf16.sustained"].set_index("device")
    assert rows.loc["0", "at"].endswith("1.2% below the short burst") and rows.loc["0", "verdict"] == "PASS"
    assert rows.loc["1", "verdict"] == "WARN" and "20% below the short-burst figure" in rows.loc["1", "reason"]
