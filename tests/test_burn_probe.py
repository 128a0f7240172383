"""The burn-in's parts on the CPU: bitwise comparison, the pattern test, the loop, siblings, error counters (fakes)."""

import threading
from pathlib import Path

import pytest
import torch

from mlbench import device_errors
from mlbench.burn.exchange import Exchange
from mlbench.burn.plan import BurnOptions, make_plan
from mlbench.burn.probe import MatmulCheck, Parts, PatternTest, Siblings, burn, deterministic
from mlbench.device import resolve
from mlbench.records import Status

CPU = resolve("cpu")
RECORD = {"type": "cpu", "name": "AMD EPYC", "index": None}


def small_plan(**options):
    return make_plan("cpu", BurnOptions(device="cpu", shape="96x80x64", **options))


def test_same_seed_same_bits_and_no_mismatch_over_iterations():
    plan = small_plan()
    with deterministic(plan.dtype.allow_tf32):
        first, second = MatmulCheck(CPU, plan), MatmulCheck(CPU, plan)
        assert first.make_reference() == second.make_reference()
        first.run(5)
        found = first.take()
    assert found.count == 0 and first.iteration == 6
    assert len(first.digest) == 64 and len(first.block_digests) == 256


@pytest.mark.parametrize("where", ["host", "device-side tracking"])
def test_a_flipped_bit_is_found_with_its_iteration_and_element(where):
    plan = small_plan()
    with deterministic(False):
        check = MatmulCheck(CPU, plan, corrupt_from=3)
        if where != "host":
            check._on_host = None  # the accelerators' path: counts and the first bad element kept in tensors
        check.make_reference()
        check.run(4)  # iterations 1..4: 3 and 4 carry the flipped bit
        found = check.take()
        again = check.take()
    index = 96 * 80 // 3
    assert (found.count, found.first_iteration, found.first_index) == (2, 3, index)
    assert found.got_bits ^ found.expected_bits == 1  # one bit, bit 0
    assert again.count == 0  # counting starts afresh after take
    text = found.describe(check)
    assert "iteration 3" in text and f"[{index // 80}, {index % 80}]" in text


def test_pattern_test_finds_a_bad_word():
    test = PatternTest(CPU, total_bytes=3 * 4096, chunk_bytes=4096)
    assert len(test.chunks) == 3 and test.bytes == 3 * 4096
    assert test.run(0).errors == 0
    test.write(1)
    test.chunks[1][5] ^= 4  # a bit that does not hold
    errors, offset, got, expected = test.check(1)
    assert (errors, offset, got ^ expected) == (1, 4096 + 5 * 4, 4)
    keys = {test.key(p, c) for p in range(8) for c in range(3)}
    assert len(keys) == 24  # every pass and chunk holds a different pattern


class FakeCounters:
    """Error counters that grow by one corrected ECC error at the given read."""

    backend = "fake"
    why = None
    xid_codes = []

    def __init__(self, grow_at_read=None):
        self.reads = 0
        self.grow_at_read = grow_at_read

    def read(self):
        self.reads += 1
        grown = self.grow_at_read is not None and self.reads >= self.grow_at_read
        return {"ecc_corrected": 1 if grown else 0, "xid_events": 0}


def parts_for(plan, counters, siblings=None, corrupt_from=None):
    check = MatmulCheck(CPU, plan, corrupt_from)
    siblings = siblings or Siblings(None, "h1", RECORD, {"k": 1})
    return Parts(CPU, plan, check, PatternTest(CPU, 8192, 4096), counters, siblings, {"seed": plan.seed})


def run_burn(parts):
    with deterministic(False):
        return list(burn(parts, threading.Event()))


def test_clean_burn_one_record_per_interval():
    plan = small_plan(duration="0.6s", interval="0.2s")
    results = run_burn(parts_for(plan, FakeCounters()))
    assert len(results) == 3 and all(r.status == Status.OK for r in results)
    assert [r.params["interval"] for r in results] == [1, 2, 3]
    for r in results:
        m = r.metrics
        assert m["iterations"] >= 1 and m["mismatches"] == 0 and m["pattern_errors"] == 0
        assert m["tflops"] == pytest.approx(m["iterations"] * 2 * 96 * 80 * 64 / m["time_s"] / 1e12)
        assert m["last_iteration"] - m["first_iteration"] + 1 == m["iterations"]
    assert results[1].metrics["first_iteration"] == results[0].metrics["last_iteration"] + 1


def test_counter_growth_is_an_error_record():
    plan = small_plan(duration="0.4s", interval="0.2s")
    results = run_burn(parts_for(plan, FakeCounters(grow_at_read=2)))  # read 1: the start; 2: after interval 1
    assert results[0].status == Status.ERROR and "error_counter_growth" in results[0].flags
    assert "error counters grew during iterations 1-" in results[0].error and "ecc_corrected +1" in results[0].error
    assert results[0].error.startswith("h1 cpu (")
    assert results[1].status == Status.OK  # no further growth


def test_siblings_name_the_gpu_whose_first_result_differs(tmp_path):
    plan = small_plan(duration="0.2s")
    out = tmp_path / "burn-gpu0.jsonl"
    key = {"device_name": "AMD EPYC", "shape": "96x80x64"}
    with deterministic(False):
        good = MatmulCheck(CPU, plan)
        good.make_reference()
    for pid in (101, 102):  # two siblings that agree with each other (the right answer)
        sibling = Siblings(Exchange(out, "r1", "h1", RECORD, pid=pid), "h1", dict(RECORD), key)
        sibling.label = sibling.entry["label"] = f"h1 gpu{pid}"
        sibling.publish(digest=good.digest, blocks=good.block_digests, elements=good.bits.numel(), state="done")
    me = Siblings(Exchange(out, "r1", "h1", RECORD, pid=103), "h1", RECORD, key)
    results = run_burn(parts_for(plan, FakeCounters(), me, corrupt_from=0))  # this device's first result is wrong
    (result,) = results
    assert result.status == Status.ERROR and "differs_from_siblings" in result.flags
    index = 96 * 80 // 3
    assert "iteration 0" in result.error and "majority" in result.error
    first, last = [int(x) for x in result.error.split("elements [")[1].split(")")[0].split(", ")]
    assert first <= index < last  # the block that holds the flipped element
    assert len(list(Path(tmp_path, "burn-digests", "r1").glob("*.json"))) == 3


def test_no_siblings_no_verdict():
    me = Siblings(None, "h1", RECORD, {})
    me.publish(digest="x", blocks=[], elements=1)
    assert me.odd() is None and me.slow() == {}


# -- error counters behind the device seam --------------------------------------------------------


class FakeNvml:
    NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC = 0, 1, 0
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 0, 1
    nvmlEventTypeXidCriticalError = 8

    def __init__(self):
        self.corrected, self.events, self.shut = 0, [], False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid != "GPU-abc":
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "h0"

    def nvmlDeviceGetTotalEccErrors(self, handle, kind, counter):
        return self.corrected if kind == self.NVML_MEMORY_ERROR_TYPE_CORRECTED else 0

    def nvmlDeviceGetRetiredPages(self, handle, cause):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")  # Ampere and newer remap rows instead

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlDeviceGetRemappedRows(self, handle):
        return (0, 0, 0, 0)

    def nvmlEventSetCreate(self):
        return "set"

    def nvmlDeviceRegisterEvents(self, handle, kinds, event_set):
        assert kinds == self.nvmlEventTypeXidCriticalError

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        if not self.events:
            raise RuntimeError("NVML_ERROR_TIMEOUT")
        return type("Data", (), {"eventData": self.events.pop(0)})()

    def nvmlEventSetFree(self, event_set):
        pass


def test_nvml_counters_read_what_the_gpu_supports_and_count_xid_events():
    nvml = FakeNvml()
    counters = device_errors.nvml_counters(0, "abc", None, load=lambda: nvml)
    assert counters.backend == "nvml" and counters.why is None
    before = counters.read()
    assert before == {
        "ecc_corrected": 0,
        "ecc_uncorrected": 0,
        "remapped_rows_correctable": 0,
        "remapped_rows_uncorrectable": 0,
        "remap_pending": 0,
        "remap_failure": 0,
        "xid_events": 0,
    }
    assert set(counters.unavailable) == {"retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"}
    nvml.corrected, nvml.events = 2, [79, 48]
    after = counters.read()
    assert (after["ecc_corrected"], after["xid_events"], counters.xid_codes) == (2, 2, [79, 48])
    assert counters.describe()["xid_codes"] == [79, 48]
    counters.close()
    assert nvml.shut


def test_no_counter_backend_says_why(tmp_path):
    def missing():
        raise ImportError("no pynvml")

    assert "not installed" in device_errors.nvml_counters(0, None, None, load=missing).why
    assert "does not know this GPU" in device_errors.nvml_counters(0, "zzz", None, load=FakeNvml).why
    none = device_errors.edac_counters(str(tmp_path))
    assert none.read() == {} and "EDAC" in none.why
    for mc, (ce, ue) in {"mc0": (3, 0), "mc1": (1, 2)}.items():
        (tmp_path / "sys/devices/system/edac/mc" / mc).mkdir(parents=True)
        (tmp_path / "sys/devices/system/edac/mc" / mc / "ce_count").write_text(f"{ce}\n")
        (tmp_path / "sys/devices/system/edac/mc" / mc / "ue_count").write_text(f"{ue}\n")
    edac = device_errors.edac_counters(str(tmp_path))
    assert edac.backend == "edac" and edac.read() == {"ecc_corrected": 4, "ecc_uncorrected": 2}


def test_deterministic_settings_are_restored():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic(False) as settings:
        assert torch.are_deterministic_algorithms_enabled()
        assert settings["deterministic"] and settings["cublas_workspace_config"]
    assert torch.are_deterministic_algorithms_enabled() == before
