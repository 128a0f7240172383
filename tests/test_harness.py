"""The shared probe loop, once for all probes: records, counts, Ctrl-C, SIGTERM, skipped, errors, exit codes."""

import contextlib
import json
import os
import signal
from dataclasses import dataclass

import pytest

from mlbench import harness
from mlbench.exitcodes import FAILED, INCOMPLETE, OK, USAGE, UsageError
from mlbench.options import ProbeOptions, option
from mlbench.records import Result, validate


@dataclass(frozen=True)
class FakeOptions(ProbeOptions):
    items: str = option("--items", default="ok,ok", help="Comma list of what each result is.")
    strict: bool = option("--strict/--lenient", default=False, help="No ok result is a failure.")


def _results(items: str, stop):
    for i, item in enumerate(items.split(",")):
        if item == "ok":
            yield Result({"i": i}, {"value": float(i)})
        elif item == "skip":
            yield Result.skipped({"i": i}, "not here")
        elif item == "error":
            yield Result.failed({"i": i}, f"wrong element at {i}")
        elif item == "ctrl-c":
            raise KeyboardInterrupt
        elif item == "swallowed":
            # the signal's exception lands where something swallows it (a fork handler, a cleanup)
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass
            yield Result({"i": i}, {"value": float(i)})
        elif item == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            yield Result({"i": i}, {"value": float(i)})


class FakeProbe(harness.Probe):
    """A probe that measures nothing: its results are what --items says."""

    name = "fake"
    options = FakeOptions
    help = __doc__

    def __init__(self):
        self.started = 0
        self.finished = []

    def validate(self, options):
        if "bad" in options.items:
            raise UsageError("bad --items")

    @contextlib.contextmanager
    def start(self, options, stop):
        self.started += 1
        yield harness.Run(
            {"type": "cpu", "name": "fake", "index": None},
            "fake on nothing",
            _results(options.items, stop),
            summary=lambda records, interrupted: f"summary of {len(records)}",
            noun="item(s)",
            require_ok=options.strict,
            finish=self.finished.append,
        )


def run(tmp_path, **values):
    probe = FakeProbe()
    out = tmp_path / "fake.jsonl"
    code = harness.run_probe(probe, FakeOptions(out=str(out), run_id="r1", **values))
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, records, probe


def test_all_ok_exits_0_and_every_record_is_valid(tmp_path, capsys):
    code, records, probe = run(tmp_path, items="ok,ok,ok")
    assert code == OK and probe.finished == [OK]
    assert [r["params"]["i"] for r in records] == [0, 1, 2]
    assert all(validate(r) == [] and r["probe"] == "fake" and r["run_id"] == "r1" for r in records)
    out = capsys.readouterr()
    assert "summary of 3\n3 item(s) measured, 0 skipped, 0 failed" in out.out
    assert "mlbench fake: fake on nothing; records -> " in out.err
    assert (tmp_path / "env.json").exists()


def test_skipped_is_not_a_failure_and_says_why(tmp_path, capsys):
    code, records, _ = run(tmp_path, items="ok,skip,skip")
    assert code == OK
    assert [r["status"] for r in records] == ["ok", "skipped", "skipped"]
    assert "1 item(s) measured, 2 skipped, 0 failed\n  skipped: not here" in capsys.readouterr().out


def test_a_failed_result_exits_1_after_measuring_everything(tmp_path, capsys):
    code, records, probe = run(tmp_path, items="ok,error,ok")
    assert code == FAILED and probe.finished == [FAILED]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert "  error: wrong element at 1" in capsys.readouterr().out


def test_nothing_ok_fails_only_when_the_probe_requires_it(tmp_path):
    assert run(tmp_path, items="skip")[0] == OK
    assert run(tmp_path, items="skip", strict=True)[0] == FAILED


def test_ctrl_c_keeps_what_was_measured_and_exits_3(tmp_path, capsys):
    code, records, _ = run(tmp_path, items="ok,ok,ctrl-c,ok")
    assert code == INCOMPLETE
    assert len(records) == 2
    assert "interrupted after 2 measurement(s)" in capsys.readouterr().out


def test_an_interruption_whose_exception_was_swallowed_still_stops_the_run(tmp_path):
    code, records, _ = run(tmp_path, items="ok,swallowed,ok,ok,ok")
    assert code == INCOMPLETE
    assert len(records) == 2  # the result in progress is kept; nothing after it is measured


def test_sigterm_is_an_interruption(tmp_path):
    code, records, _ = run(tmp_path, items="ok,sigterm,ok")
    assert code == INCOMPLETE and len(records) == 1  # the exception ends the measurement in progress


def test_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run(tmp_path, items="ok")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_bad_input_is_refused_before_anything_starts_or_is_written(tmp_path):
    probe = FakeProbe()
    with pytest.raises(UsageError):
        harness.run_probe(probe, FakeOptions(items="bad", out=str(tmp_path / "f.jsonl")))
    assert probe.started == 0 and list(tmp_path.iterdir()) == []
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        harness.run_probe(probe, FakeOptions(out=str(tmp_path / "adir")))
    assert probe.started == 0


def test_the_click_command_maps_errors_to_exit_codes(tmp_path):
    command = harness.command(FakeProbe)
    out = str(tmp_path / "c.jsonl")
    assert command.main(["--items", "ok", "--out", out], standalone_mode=False) == OK
    assert command.main(["--items", "error", "--out", out], standalone_mode=False) == FAILED
    assert command.main(["--items", "bad", "--out", out], standalone_mode=False) == USAGE
    assert command.main(["--nope"], standalone_mode=False) == USAGE


def test_options_to_argv_round_trip():
    given = FakeOptions(device="cpu", quick=True, items="ok,skip", strict=True, run_id="r9")
    argv = given.to_argv()
    assert argv == ["--device", "cpu", "--quick", "--run-id", "r9", "--items", "ok,skip", "--strict"]
    command = harness.command(FakeProbe)
    context = command.make_context("fake", list(argv))
    assert FakeOptions(**context.params) == given


def test_a_non_writing_rank_writes_and_prints_nothing(tmp_path, capsys):
    class Rank1(FakeProbe):
        @contextlib.contextmanager
        def start(self, options, stop):
            with super().start(options, stop) as run:
                run.writes, run.rank, run.world_size = False, 1, 2
                yield run

    out = tmp_path / "r.jsonl"
    assert harness.run_probe(Rank1(), FakeOptions(items="ok,error", out=str(out))) == FAILED
    assert not out.exists()
    assert capsys.readouterr().out == ""


def test_delegate_replaces_the_local_run():
    class Elsewhere(FakeProbe):
        def delegate(self, options):
            return 3

    probe = Elsewhere()
    assert harness.run_probe(probe, FakeOptions()) == 3 and probe.started == 0


def test_a_probe_can_move_the_out_check_into_its_start(tmp_path):
    """A probe whose ranks agree on --out once started (rank 0 checks it) skips the early check."""

    class ChecksLater(FakeProbe):
        def check_out(self, options):
            pass

    (tmp_path / "adir").mkdir()
    probe = ChecksLater()
    with pytest.raises(UsageError, match="is a directory"):  # the writing session still refuses it
        harness.run_probe(probe, FakeOptions(out=str(tmp_path / "adir")))
    assert probe.started == 1


def test_stop_runs_its_callbacks_when_set_and_at_once_when_already_set():
    stop = harness.Stop()
    calls = []
    stop.when_set(lambda: calls.append("a"))
    assert calls == [] and not stop.is_set()
    stop.set()
    assert calls == ["a"] and stop.is_set()
    stop.when_set(lambda: calls.append("b"))
    assert calls == ["a", "b"]


def test_a_signal_reaches_what_the_probe_registered_even_when_its_exception_is_swallowed(tmp_path):
    """Work the loop cannot reach (e.g. child processes) hears of the interruption through `stop.when_set`."""
    told = []

    class Listening(FakeProbe):
        @contextlib.contextmanager
        def start(self, options, stop):
            stop.when_set(lambda: told.append("stop"))
            with super().start(options, stop) as run:
                yield run

    code = harness.run_probe(Listening(), FakeOptions(out=str(tmp_path / "f.jsonl"), items="ok,swallowed,ok"))
    assert code == INCOMPLETE and told == ["stop"]
