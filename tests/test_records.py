import json
import os

import pytest

from mlbench.exitcodes import UsageError
from mlbench.records import RecordWriter, Result, check_writable, make_record, new_run_id, read_records, validate


def mamf_record(**overrides):
    record = make_record(
        "mamf",
        "run1",
        {"type": "cpu", "name": "x", "index": None},
        {"m": 1, "n": 2, "k": 3, "dtype": "bf16"},
        {"tflops": 1.0, "tflops_mean": 0.9, "tflops_max": 1.1, "time_ms": 2.0},
    )
    record.update(overrides)
    return record


def test_a_conforming_record_has_no_problems():
    assert validate(mamf_record()) == []


def test_validate_names_what_is_missing():
    record = mamf_record()
    del record["metrics"]["tflops"]
    assert validate(record) == ["metrics lacks 'tflops'"]
    assert "status 'skipped' needs an error message" in validate(mamf_record(status="skipped"))
    assert validate({"schema": "mlbench/1"})[0].startswith("missing key")
    bad = mamf_record()
    bad["params"].pop("dtype")
    assert validate(bad) == ["params lacks 'dtype'"]


def test_skipped_records_need_no_metrics():
    record = make_record(
        "mamf",
        "r",
        {"type": "cpu", "name": "x", "index": None},
        {"m": 1, "n": 1, "k": 1, "dtype": "tf32"},
        status="skipped",
        error="no tf32 here",
    )
    assert validate(record) == []


def test_writer_flushes_each_line_and_appends(tmp_path):
    path = tmp_path / "deep" / "mamf.jsonl"
    writer = RecordWriter(path).open()
    writer.write(mamf_record())
    # readable before close: one flushed line per measurement
    assert len(path.read_text().splitlines()) == 1
    writer.write(mamf_record(metrics={"tflops": float("nan")}))
    writer.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[1])["metrics"]["tflops"] is None  # NaN is not JSON: null
    with RecordWriter(path) as again:
        again.write(mamf_record())
    assert len(list(read_records(path))) == 3


def test_read_records_reports_bad_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(mamf_record()) + "\n{truncated\n" + json.dumps(mamf_record()) + "\n")
    bad = []
    records = list(read_records(path, on_bad_line=lambda p, n, line: bad.append(n)))
    assert len(records) == 2 and bad == [2]


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "a" / "b.jsonl") == tmp_path / "a" / "b.jsonl"
    assert not (tmp_path / "a").exists()  # nothing created by the check
    with pytest.raises(UsageError):
        check_writable(tmp_path)  # a directory
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError):
        check_writable(tmp_path / "file" / "x.jsonl")  # parent is a file
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(UsageError):
            check_writable(ro / "x.jsonl")


def test_run_ids_are_unique_and_overridable(monkeypatch):
    monkeypatch.delenv("MLBENCH_RUN_ID", raising=False)
    assert new_run_id() != new_run_id()
    monkeypatch.setenv("MLBENCH_RUN_ID", "fixed")
    assert new_run_id() == "fixed"


def test_result_constructors():
    assert Result.skipped({"a": 1}, "why").status == "skipped"
    assert not Result.failed({}, "bad").ok
