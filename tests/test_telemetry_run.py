"""Telemetry in real probe runs (the replayed timeline, `MLBENCH_FAULTS=telemetry=FILE`) and in the report."""

import json

import pytest
from conftest import read_jsonl, run_module

from mlbench.records import RecordWriter, make_record
from mlbench.report.api import build_report

# Counters growing linearly over 1000 s: every window, whatever its length, is held by power for 25% of its
# span, thermal 5% (not above the limit) and hardware slowdown 2%; figures constant.
THROTTLED = [
    {
        "t": 0,
        "sm_clock_mhz": 1410,
        "power_w": 650,
        "temp_c": 87,
        "throttle_ns": {"power": 0, "thermal": 0, "hw_slowdown": 0},
    },
    {
        "t": 1000,
        "sm_clock_mhz": 1410,
        "power_w": 650,
        "temp_c": 87,
        "throttle_ns": {"power": 250e9, "thermal": 50e9, "hw_slowdown": 20e9},
    },
]
CALM = [
    {"t": 0, "sm_clock_mhz": 1980, "power_w": 500, "temp_c": 61, "throttle_ns": {"power": 0}},
    {"t": 1000, "sm_clock_mhz": 1980, "power_w": 500, "temp_c": 61, "throttle_ns": {"power": 40e9}},
]


def timeline(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return f"telemetry={path}"


@pytest.fixture(scope="module")
def mamf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mamf")
    run_dir = root / "run"
    proc = run_module(
        "mlbench.mamf",
        "--quick",
        "--device",
        "cpu",
        "--out",
        str(run_dir / "mamf.jsonl"),
        env={"MLBENCH_FAULTS": timeline(root / "t.jsonl", THROTTLED)},
    )
    assert proc.returncode == 0, proc.stderr
    return run_dir, read_jsonl(run_dir / "mamf.jsonl")


@pytest.mark.slow
def test_mamf_records_carry_the_replayed_window(mamf_run):
    _, records = mamf_run
    assert len(records) >= 2
    for record in records:
        telemetry = record["telemetry"]
        assert telemetry["backend"] == "replay"
        assert telemetry["samples"] >= 2 and telemetry["span_s"] > 0
        assert telemetry["throttle"] == {"power": 0.25, "thermal": 0.05, "hw_slowdown": 0.02}
        assert telemetry["sm_clock_mhz"] == {"min": 1410.0, "median": 1410.0, "max": 1410.0}
        assert telemetry["power_w"] == {"min": 650.0, "median": 650.0, "max": 650.0}
        assert telemetry["temp_c"] == {"min": 87.0, "median": 87.0, "max": 87.0}
        assert "throttled" in record["flags"]


@pytest.mark.slow
def test_membw_records_below_the_limit_are_not_flagged(tmp_path):
    out = tmp_path / "membw.jsonl"
    proc = run_module(
        "mlbench.membw",
        "--quick",
        "--device",
        "cpu",
        "--out",
        str(out),
        env={"MLBENCH_FAULTS": timeline(tmp_path / "t.jsonl", CALM)},
    )
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out)
    assert any(r["status"] == "ok" for r in records)
    for record in records:
        assert record["telemetry"]["throttle"] == {"power": 0.04}
        assert record["telemetry"]["temp_c"] == {"min": 61.0, "median": 61.0, "max": 61.0}
        assert "throttled" not in record.get("flags", [])


def spec_file(path, records) -> str:
    """A spec row for this CPU whose bf16 peak is the best measured TFLOPS: the efficiency check passes."""
    best = max(r["metrics"]["tflops"] for r in records if r["status"] == "ok")
    path.write_text(f"key,name,match,tflops_bf16,mamf_expected_eff\ntestcpu,Test CPU,.,{best!r},0.8\n")
    return str(path)


def write_copy(run_dir, records, keep_telemetry: bool):
    """The records without `noisy` (a shared CPU's spread is not under test), with or without their telemetry."""
    run_dir.mkdir()
    with RecordWriter(run_dir / "mamf.jsonl") as writer:
        for record in records:
            record = {k: v for k, v in record.items() if keep_telemetry or k != "telemetry"}
            record["flags"] = [
                f for f in record.get("flags", []) if f != "noisy" and (keep_telemetry or f != "throttled")
            ]
            writer.write(record)
    return run_dir


def test_report_caps_a_throttled_figure_at_warn_and_names_the_cause(mamf_run, tmp_path):
    _, records = mamf_run
    specs = spec_file(tmp_path / "specs.csv", records)
    throttled = write_copy(tmp_path / "throttled", records, keep_telemetry=True)
    result = build_report([throttled], out_dir=tmp_path / "report", specs_files=[specs])
    row = result.verdicts.set_index("check").loc["mamf.bf16"]
    assert row["verdict"] == "WARN"
    assert row["reason"].endswith("; measured while throttled: power cap 25% of the span at 87 C")
    throttle = result.verdicts.set_index("check").loc["telemetry.throttle"]
    assert throttle["verdict"] == "WARN" and "power cap 25% of the span at 87 C" in throttle["reason"]
    assert (tmp_path / "report" / "plots" / "telemetry.png").exists()

    control = build_report(
        [write_copy(tmp_path / "calm", records, keep_telemetry=False)], specs_files=[specs], write=False
    )
    assert control.verdicts.set_index("check").loc["mamf.bf16", "verdict"] == "PASS"
    assert "telemetry.throttle" not in set(control.verdicts["check"])


def gpu_record(index: int, temp_c: float, m: int = 8192) -> dict:
    telemetry = {
        "backend": "nvml",
        "samples": 10,
        "start_s": 0.0,
        "span_s": 1.0,
        "sm_clock_mhz": {"min": 1980, "median": 1980, "max": 1980},
        "temp_c": {"min": temp_c, "median": temp_c, "max": temp_c},
        "throttle": {"power": 0.0},
    }
    return make_record(
        "mamf",
        "r1",
        {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "index": index},
        {"m": m, "n": m, "k": m, "dtype": "bf16"},
        {"tflops": 700.0, "tflops_mean": 700.0, "tflops_max": 710.0, "time_ms": 1.0},
        telemetry=telemetry,
    )


@pytest.mark.parametrize(
    "temps, verdict, words",
    [
        ((70.0, 77.0), "WARN", "GPU 1 ran 7.0 C hotter than GPU 0 under the same load (77 C against 70 C"),
        ((70.0, 74.5), "PASS", "GPUs within 4.5 C of each other under the same load"),
    ],
)
def test_temperature_spread_of_a_node_under_the_same_load(tmp_path, temps, verdict, words):
    with RecordWriter(tmp_path / "mamf.jsonl") as writer:
        for index, temp in enumerate(temps):
            writer.write(gpu_record(index, temp))
        writer.write(gpu_record(0, 40.0, m=1024))  # another load: not compared with the first
    result = build_report([tmp_path], write=False)
    row = result.verdicts.set_index("check").loc["telemetry.temp_spread"]
    assert row["verdict"] == verdict and row["device"] == "node"
    assert words in row["reason"]
    assert row["at"].startswith(f"spread {temps[1] - temps[0]:.1f} C under mamf bf16 8192x8192x8192")
