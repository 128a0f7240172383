"""Node sanity verdicts and the HBM peak's choice of buffer sizes, on real and hand-written records."""

import pytest
from conftest import run_module
from report_records import membw, rec, write_jsonl

from mlbench.report.api import build_report


def node(check, metrics, *, host="n1", dev_type="node", index=None, name="n1", params=None):
    return rec(
        "node", {"check": check, **(params or {})}, metrics, host=host, dev_type=dev_type, index=index, name=name
    )


def verdicts(tmp_path, records):
    write_jsonl(tmp_path / "in" / "node.jsonl", records)
    result = build_report([str(tmp_path / "in")], out_dir=str(tmp_path / "out"))
    v = result.verdicts
    return {row.check: (row.verdict, row.reason) for row in v.itertuples(index=False)}, result.exit_code


def test_sizing_rules(tmp_path):
    got, code = verdicts(
        tmp_path,
        [
            node("cpu_cores", {"cores": 32, "usable_cores": 32, "gpus": 8}),
            node("host_memory", {"bytes": 2 << 40, "gpu_memory_bytes": 640 << 30}),
            node("disk", {"used_pct": 85.0, "free_bytes": 1 << 40, "total_bytes": 8 << 40}, params={"path": "/data"}),
        ],
    )
    assert got["node.cpu_cores"][0] == "PASS" and "4.0 cores per GPU" in got["node.cpu_cores"][1]
    assert got["node.host_memory"][0] == "PASS"
    assert got["node.disk"][0] == "WARN" and "85% full" in got["node.disk"][1]
    assert code == 0


def test_starved_node_and_full_disk_fail(tmp_path):
    got, code = verdicts(
        tmp_path,
        [
            node("cpu_cores", {"cores": 16, "usable_cores": 16, "gpus": 8}),
            node("host_memory", {"bytes": 256 << 30, "gpu_memory_bytes": 640 << 30}),
            node("disk", {"used_pct": 93.0, "free_bytes": 1, "total_bytes": 2}, params={"path": "/data"}),
            node(
                "gpu",
                {"temperature_c": 40, "ecc_enabled": 1, "ecc_uncorrected_errors": 2},
                dev_type="cuda",
                index=3,
                name="NVIDIA H100 80GB HBM3",
                params={"uuid": "GPU-1"},
            ),
        ],
    )
    assert got["node.cpu_cores"][0] == "WARN" and "2.0 cores per GPU" in got["node.cpu_cores"][1]
    assert got["node.host_memory"][0] == "WARN"
    assert got["node.disk"][0] == "FAIL"
    assert got["node.gpu"][0] == "FAIL" and "2 uncorrected ECC" in got["node.gpu"][1]
    assert code == 1


@pytest.mark.slow
def test_real_node_records_from_nodecheck(tmp_path):
    out = tmp_path / "run" / "node.jsonl"
    proc = run_module("mlbench.acceptance.nodecheck", "--io-dir", str(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = build_report([str(tmp_path / "run")], out_dir=str(tmp_path / "rep"))
    checks = set(result.verdicts["check"])
    assert {"node.cpu_cores", "node.host_memory", "node.disk"} <= checks
    assert "## Node sanity" in result.markdown


def test_hbm_peak_comes_from_large_buffers_when_there_are_some(tmp_path):
    small = membw("copy", 5000.0, size=4 << 20)  # rotated through a large cache: faster than memory
    small["params"].update(sets=16, cache_resident=False)
    large = membw("copy", 3000.0, size=1 << 30)
    large["params"].update(sets=1, cache_resident=False)
    write_jsonl(tmp_path / "in" / "membw.jsonl", [small, large])
    result = build_report([str(tmp_path / "in")], out_dir=str(tmp_path / "out"))
    hbm = result.verdicts[result.verdicts["check"] == "hbm"].iloc[0]
    assert hbm["value"] == pytest.approx(3000.0)
    assert "1GiB" in hbm["at"]


def test_nics_record_is_informational_and_a_down_port_warns():
    from mlbench.report.checks.node import judge_node_record
    from mlbench.report.verdicts import Verdict

    up = judge_node_record("nics", {"nic_count": 8, "nic_down": 0, "nic_total_gbits": 3200}, {"descriptor": "8x NDR"})
    assert up.verdict == Verdict.INFO and "8 port(s) up, 3200 Gb/s" in up.reason
    down = judge_node_record("nics", {"nic_count": 8, "nic_down": 1}, {"down_ports": "mlx5_3/1"})
    assert down.verdict == Verdict.WARN and "mlx5_3/1" in down.reason
    none = judge_node_record("nics", {"nic_count": 0}, {})
    assert none.verdict == Verdict.INFO and "no fabric port" in none.reason
