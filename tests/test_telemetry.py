"""Telemetry units: the replayed timeline through the sampler (fake clock), window arithmetic, the NVML and
amdsmi backends against fake modules, the CPU readers on fake sysfs trees, no backend, the harness hook."""

import contextlib
import json
import sys
import types

import pytest

from mlbench import harness
from mlbench.exitcodes import UsageError
from mlbench.faults import Faults
from mlbench.options import ProbeOptions
from mlbench.records import Result
from mlbench.telemetry import (
    Cause,
    CounterReading,
    DeviceRef,
    Sampler,
    Unavailable,
    Watch,
    amd,
    cpu,
    flat_columns,
    is_throttled,
    nvml,
    object_words,
    open_source,
    row_words,
    throttle_words,
)
from mlbench.telemetry.replay import ReplaySource, load_timeline
from mlbench.telemetry.summary import counter_fractions

TIMELINE = [
    {
        "t": 0,
        "sm_clock_mhz": 1980,
        "power_w": 700,
        "temp_c": 70,
        "throttle_ns": {"power": 0, "thermal": 0, "hw_slowdown": 0},
    },
    {
        "t": 10,
        "sm_clock_mhz": 1500,
        "power_w": 650,
        "temp_c": 80,
        "throttle_ns": {"power": 0, "thermal": 0, "hw_slowdown": 0},
    },
    {
        "t": 20,
        "sm_clock_mhz": 1200,
        "power_w": 600,
        "temp_c": 90,
        "throttle_ns": {"power": 5e9, "thermal": 1e9, "hw_slowdown": 0},
    },
    {"t": 30, "sm_clock_mhz": 1300, "power_w": 610, "temp_c": 91, "throttle_ns": {"hw_slowdown": 4e9}},
]


def write_lines(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def test_replayed_timeline_gives_hand_computed_window(tmp_path):
    """Window 5 s .. 25 s, samples at 5 (mark), 8, 12, 16, 22, 25 (end): figures step per line, counters grow
    linearly inside a segment: power 5e9 ns of 20 s = 0.25, thermal 1e9 = 0.05, hw_slowdown 2e9 (half of
    the 20..30 segment's 4e9) = 0.1."""
    lines = load_timeline(write_lines(tmp_path / "t.jsonl", TIMELINE))
    clock = FakeClock(5.0)
    sampler = Sampler([ReplaySource(lines, origin_s=0.0)], clock=clock, origin_s=0.0)
    mark = sampler.mark()
    for t in (8.0, 12.0, 16.0, 22.0):
        clock.t = t
        sampler.tick()
    clock.t = 25.0
    (obj,) = sampler.window(mark)
    assert obj["backend"] == "replay"
    assert obj["samples"] == 6
    assert (obj["start_s"], obj["span_s"]) == (5.0, 20.0)
    # sm: 1980 1980 1500 1500 1200 1200; power: 700 700 650 650 600 600; temp: 70 70 80 80 90 90
    assert obj["sm_clock_mhz"] == {"min": 1200.0, "median": 1500.0, "max": 1980.0}
    assert obj["power_w"] == {"min": 600.0, "median": 650.0, "max": 700.0}
    assert obj["temp_c"] == {"min": 70.0, "median": 80.0, "max": 90.0}
    assert obj["throttle"] == {"power": 0.25, "thermal": 0.05, "hw_slowdown": 0.1}
    assert is_throttled(obj)
    assert object_words(obj) == "power cap 25% of the span, hardware slowdown 10% of the span at 90 C"


def test_replay_holds_before_the_first_and_after_the_last_line(tmp_path):
    lines = load_timeline(write_lines(tmp_path / "t.jsonl", TIMELINE))
    source = ReplaySource(lines, origin_s=100.0)
    assert source.sample(99.0).figures["sm_clock_mhz"] == 1980  # t = -1: the first line holds
    assert source.sample(500.0).figures["temp_c"] == 91  # after the last line: it holds
    late = source.counters(500.0).counters
    assert late[Cause.HW_SLOWDOWN] == (4e9, None) and late[Cause.POWER] == (5e9, None)  # absent: carried over


@pytest.mark.parametrize(
    "lines, words",
    [
        ([{"t": 0}, {"t": -1}], "goes back"),
        ([{"t": 0, "throttle_ns": {"power": 5}}, {"t": 1, "throttle_ns": {"power": 4}}], "cumulative"),
        ([{"t": 0, "throttle_ns": {"fan": 5}}], "unknown cause 'fan'"),
        ([{"t": 0, "clock": 5}], "unknown key 'clock'"),
        ([{"sm_clock_mhz": 5}], '"t"'),
        ([{"t": "soon"}], "must be a number"),
    ],
)
def test_a_bad_timeline_is_a_usage_error(tmp_path, lines, words):
    with pytest.raises(UsageError, match=words):
        load_timeline(write_lines(tmp_path / "t.jsonl", lines))
    with pytest.raises(UsageError, match="cannot read"):
        load_timeline(str(tmp_path / "missing.jsonl"))


def test_throttled_is_more_than_five_percent_of_one_throttling_cause():
    assert not is_throttled({"throttle": {"power": 0.05, "thermal": 0.05, "hw_slowdown": 0.05}})
    assert is_throttled({"throttle": {"thermal": 0.051}})
    assert not is_throttled({"throttle": {"sync_boost": 0.9, "low_utilization": 1.0}})  # not power/thermal/hw
    assert not is_throttled({"backend": None, "reason": "none"})
    assert throttle_words({"hw_slowdown": 0.34, "power": 0.02}, 87.0) == "hardware slowdown 34% of the span at 87 C"
    assert throttle_words({"power": 0.02}, 87.0) == ""


def test_counter_fractions_use_the_driver_base_or_our_span():
    before = CounterReading(0.0, {Cause.POWER: (0.0, 1e9), Cause.THERMAL: (0.0, 5e9), Cause.SYNC_BOOST: (9.0, None)})
    after = CounterReading(2.0, {Cause.POWER: (3e8, 2e9), Cause.THERMAL: (1e8, 5e9), Cause.SYNC_BOOST: (1.0, None)})
    # power: 3e8 / (2e9 - 1e9); thermal: the base did not move, so our span 2 s; sync boost went back: none
    assert counter_fractions(before, after) == {Cause.POWER: 0.3, Cause.THERMAL: 0.05}
    ticks = CounterReading(0.0, {Cause.POWER: (10.0, 100.0)}, amount_ns=False)
    assert counter_fractions(ticks, CounterReading(1.0, {Cause.POWER: (60.0, 300.0)}, amount_ns=False)) == {
        Cause.POWER: 0.25
    }
    assert counter_fractions(ticks, CounterReading(1.0, {Cause.POWER: (60.0, 100.0)}, amount_ns=False)) == {}


def test_flat_columns_and_row_words():
    objs = [
        {"backend": "nvml", "temp_c": {"max": 87.0}, "throttle": {"hw_slowdown": 0.34}, "throttle_sampled": ["x"]},
        None,
        {"backend": None, "reason": "no NVML"},
    ]
    columns = flat_columns(objs)
    assert columns == {
        "telemetry.backend": ["nvml", None, None],
        "telemetry.temp_c.max": [87.0, None, None],
        "telemetry.throttle.hw_slowdown": [0.34, None, None],
        "telemetry.reason": [None, None, "no NVML"],
    }
    row = {name: values[0] for name, values in columns.items()}
    assert row_words(row) == "hardware slowdown 34% of the span at 87 C"


# -- NVML ------------------------------------------------------------------------------------------


class NVMLError(Exception):
    pass


def fake_field(value, ret=0, stamp_us=0):
    return types.SimpleNamespace(
        nvmlReturn=ret, valueType=3, value=types.SimpleNamespace(ullVal=value), timestamp=stamp_us
    )


class FakeNvml:
    """pynvml's calls the backend makes, answering from scripted reads (one script entry per read)."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL = 0, 1
    NVML_FI_DEV_MEMORY_TEMP = 82
    NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN = 269
    NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN = 270
    NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN = 271

    def __init__(self, init_error=None):
        self.calls = []
        self.init_error = init_error
        self.reads = {"counters": 0, "masks": [0x4 | 0x8, 0x0]}
        self.violations = {
            0: [(0, 1_000_000), (300_000_000, 2_000_000)],  # power: ns, reference us
            1: [(0, 5_000_000), (100_000_000, 5_000_000)],
        }  # thermal: the reference stands still

    def _log(self, name, *args):
        self.calls.append((name, args))

    def nvmlInit(self):
        self._log("nvmlInit")
        if self.init_error:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self):
        self._log("nvmlShutdown")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self._log("byUUID", uuid)
        if uuid != "GPU-abc":
            raise NVMLError("not found")
        return "handle"

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        raise NVMLError("not found")

    def nvmlDeviceGetHandleByIndex(self, index):
        self._log("byIndex", index)
        return f"handle{index}"

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return {1: 1755, 2: 2619}[kind]

    def nvmlDeviceGetPowerUsage(self, handle):
        return 650_000  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._log("limit")
        raise NVMLError("Not Supported")

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 81

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.reads["masks"].pop(0)

    def nvmlDeviceGetFieldValues(self, handle, ids):
        if ids == [82]:
            return [fake_field(85)]
        n = self.reads["counters"]
        # sw thermal: failed read; hw thermal: 4e8 ns in 1 s of its timestamps; power brake: none
        return [fake_field(0, ret=3), fake_field(4e8 * n, stamp_us=1_000_000 * (n + 1)), fake_field(0, stamp_us=n + 1)]

    def nvmlDeviceGetViolationStatus(self, handle, policy):
        ns, ref_us = self.violations[policy][self.reads["counters"]]
        return types.SimpleNamespace(violationTime=ns, referenceTime=ref_us)


def test_nvml_source_figures_counters_and_sampled_causes():
    fake = FakeNvml()
    source = nvml.open_nvml(DeviceRef("cuda", 0, uuid="abc"), nvml=fake, environ={"CUDA_VISIBLE_DEVICES": "4"})
    assert isinstance(source, nvml.NvmlSource)
    assert ("byUUID", ("GPU-abc",)) in fake.calls
    clock = FakeClock(0.0)
    sampler = Sampler([source], clock=clock, origin_s=0.0)
    mark = sampler.mark()
    fake.reads["counters"] = 1
    clock.t = 2.0
    (obj,) = sampler.window(mark)
    assert obj["backend"] == "nvml" and obj["samples"] == 2
    assert obj["sm_clock_mhz"]["median"] == 1755 and obj["mem_clock_mhz"]["max"] == 2619
    assert obj["power_w"]["median"] == 650.0 and "power_limit_w" not in obj  # not supported: left out
    assert obj["temp_c"]["max"] == 81 and obj["mem_temp_c"]["max"] == 85
    assert (obj["util_pct"]["median"], obj["mem_util_pct"]["median"]) == (97, 40)
    # power: 3e8 ns over 1 s of reference time; thermal: 1e8 ns over our 2 s; hw thermal 4e8 ns over 1 s
    assert obj["throttle"]["power"] == 0.3
    assert obj["throttle"]["thermal"] == 0.05
    assert obj["throttle"]["hw_thermal"] == 0.4
    assert obj["throttle"]["hw_power_brake"] == 0.0
    # no counter for hardware slowdown as a whole: the share of samples whose mask had the bit (1 of 2);
    # software thermal's counter failed to read: from the samples too (its bit was never set)
    assert obj["throttle"]["hw_slowdown"] == 0.5 and obj["throttle"]["sw_thermal"] == 0.0
    assert {"hw_slowdown", "sw_thermal"} <= set(obj["throttle_sampled"]) and "power" not in obj["throttle_sampled"]
    assert [c for c in fake.calls if c[0] == "limit"] == [("limit", ())]  # an unsupported call is not repeated
    source.close()
    assert fake.calls[-1][0] == "nvmlShutdown"


def test_nvml_finds_a_gpu_by_index_only_when_nothing_is_hidden():
    fake = FakeNvml()
    assert nvml.find_handle(fake, DeviceRef("cuda", 2), environ={}) == "handle2"
    assert nvml.find_handle(fake, DeviceRef("cuda", 2), environ={"CUDA_VISIBLE_DEVICES": "3,2"}) is None
    missing = nvml.open_nvml(DeviceRef("cuda", 2), nvml=fake, environ={"CUDA_VISIBLE_DEVICES": "3,2"})
    assert isinstance(missing, Unavailable) and "no GPU matching cuda:2" in missing.reason


def test_nvml_unavailable_says_why(monkeypatch):
    down = nvml.open_nvml(DeviceRef("cuda", 0), nvml=FakeNvml(init_error="Driver Not Loaded"))
    assert isinstance(down, Unavailable) and down.reason == "NVML did not start: Driver Not Loaded"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    absent = nvml.open_nvml(DeviceRef("cuda", 0))
    assert isinstance(absent, Unavailable) and "nvidia-ml-py is not installed" in absent.reason


# -- amdsmi ----------------------------------------------------------------------------------------


class FakeAmdsmi:
    AmdSmiClkType = types.SimpleNamespace(GFX="gfx", MEM="mem")
    AmdSmiTemperatureType = types.SimpleNamespace(HOTSPOT="hotspot", EDGE="edge", VRAM="vram")
    AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT="current")

    def __init__(self):
        self.reads = 0

    def amdsmi_init(self):
        pass

    def amdsmi_shut_down(self):
        pass

    def amdsmi_get_processor_handles(self):
        return ["h0", "h1"]

    def amdsmi_get_gpu_device_bdf(self, handle):
        return {"h0": "0000:0C:00.0", "h1": "0000:22:00.0"}[handle]

    def amdsmi_get_clock_info(self, handle, kind):
        return {"clk": {"gfx": 2100, "mem": 1300}[kind]}

    def amdsmi_get_power_info(self, handle):
        return {"current_socket_power": "N/A", "average_socket_power": 742}

    def amdsmi_get_power_cap_info(self, handle):
        return {"power_cap": 750_000_000}  # uW

    def amdsmi_get_temp_metric(self, handle, sensor, metric):
        if sensor == "hotspot":
            raise RuntimeError("not supported")
        return {"edge": 75, "vram": 80}[sensor]

    def amdsmi_get_gpu_activity(self, handle):
        return {"gfx_activity": 99, "umc_activity": "N/A"}

    def amdsmi_get_violation_status(self, handle):
        first = self.reads == 0
        return {
            "acc_counter": 100 if first else 300,
            "acc_ppt_pwr": 10 if first else 60,
            "acc_socket_thrm": "N/A",
            "acc_prochot_thrm": 0,
            "acc_hbm_thrm": 0,
            "acc_vr_thrm": 0,
        }


def test_amdsmi_source_matches_by_bus_id_and_divides_by_the_accumulation_counter():
    fake = FakeAmdsmi()
    source = amd.open_amdsmi(
        DeviceRef("cuda", 0, pci_bus_id="0000:22:00.0"), smi=fake, environ={"HIP_VISIBLE_DEVICES": "1"}
    )
    assert source.handle == "h1"
    clock = FakeClock(0.0)
    sampler = Sampler([source], clock=clock, origin_s=0.0)
    mark = sampler.mark()
    fake.reads, clock.t = 1, 1.0
    (obj,) = sampler.window(mark)
    assert obj["backend"] == "amdsmi"
    assert (obj["sm_clock_mhz"]["max"], obj["mem_clock_mhz"]["max"]) == (2100, 1300)
    assert (obj["power_w"]["max"], obj["power_limit_w"]["max"]) == (742, 750.0)
    assert (obj["temp_c"]["max"], obj["mem_temp_c"]["max"], obj["util_pct"]["max"]) == (75, 80, 99)
    assert "mem_util_pct" not in obj
    # PPT power: (60 - 10) / (300 - 100); socket thermal not supported; the others did not move
    assert obj["throttle"] == {"power": 0.25, "hw_thermal": 0.0, "mem_thermal": 0.0, "vr_thermal": 0.0}
    hidden = amd.open_amdsmi(DeviceRef("cuda", 1), smi=fake, environ={"ROCR_VISIBLE_DEVICES": "1"})
    assert isinstance(hidden, Unavailable) and "no GPU matching cuda:1" in hidden.reason


# -- the CPU ---------------------------------------------------------------------------------------


def make_tree(root, freqs_khz=(), cpuinfo_mhz=(), zones=(), throttle_ms=None):
    for i, khz in enumerate(freqs_khz):
        path = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        path.mkdir(parents=True)
        (path / "scaling_cur_freq").write_text(f"{khz}\n")
    if cpuinfo_mhz:
        (root / "proc").mkdir(parents=True, exist_ok=True)
        (root / "proc/cpuinfo").write_text(
            "".join(f"processor\t: {i}\nmodel name\t: X\ncpu MHz\t\t: {mhz}\n\n" for i, mhz in enumerate(cpuinfo_mhz))
        )
    for i, (kind, millideg) in enumerate(zones):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{millideg}\n")
    if throttle_ms is not None:
        path = root / "sys/devices/system/cpu/cpu0/thermal_throttle"
        path.mkdir(parents=True)
        (path / "package_throttle_total_time_ms").write_text(f"{throttle_ms}\n")
    return str(root)


def test_cpu_readers_on_fake_trees(tmp_path):
    root = make_tree(
        tmp_path / "a",
        freqs_khz=(2_000_000, 3_000_000),
        zones=(("acpitz", 40000), ("x86_pkg_temp", 65000), ("x86_pkg_temp", 70500)),
        throttle_ms=1200,
    )
    assert cpu.cpufreq_mhz(root) == 2500.0
    assert cpu.cpufreq_mhz(root, cpus=[0]) == 2000.0
    assert cpu.zones_temp_c(cpu.thermal_zones(root)) == 70.5  # the package zones only
    assert cpu.package_throttle_ms(root) == 1200.0
    source = cpu.open_cpu(root)
    assert source.sample(1.0).figures == {"sm_clock_mhz": 2500.0, "temp_c": 70.5}
    assert source.counters(1.0).counters == {Cause.THERMAL: (1.2e9, None)}

    other = make_tree(tmp_path / "b", cpuinfo_mhz=(1000.5, 2000.5), zones=(("acpitz", 40000), ("iwlwifi", 45000)))
    assert cpu.cpufreq_mhz(other) is None
    assert cpu.cpuinfo_mhz(other) == 1500.5 and cpu.cpuinfo_mhz(other, cpus=[1]) == 2000.5
    assert cpu.zones_temp_c(cpu.thermal_zones(other)) == 45.0  # no package zone: the hottest of all
    assert cpu.open_cpu(other).sample(0.0).figures == {"sm_clock_mhz": 1500.5, "temp_c": 45.0}


def test_no_backend_says_why_and_starts_no_thread(tmp_path):
    bare = str(tmp_path)
    none = cpu.open_cpu(bare)
    assert isinstance(none, Unavailable) and "no CPU sensors readable" in none.reason
    with Watch([DeviceRef("cpu")], faults=Faults(), root=bare) as watch:
        assert watch.sampler is None
        fields = watch.fields(watch.mark(), {"type": "cpu", "name": "x", "index": None})
    assert fields == {"telemetry": {"backend": None, "reason": none.reason}}
    assert isinstance(open_source(DeviceRef("mps"), Faults()), Unavailable)
    assert open_source(DeviceRef("storage"), Faults()) is None  # not a compute device: no telemetry at all


# -- the harness hook --------------------------------------------------------------------------------


class ListProbe(harness.Probe):
    """A probe whose results are given; its records' device is `device`."""

    name = "fake"
    options = ProbeOptions

    def __init__(self, device, count=2):
        self.device, self.count = device, count

    @contextlib.contextmanager
    def start(self, options, stop):
        results = (Result({"i": i}, {"value": float(i)}, flags=["noisy"] if i else []) for i in range(self.count))
        yield harness.Run(self.device, "fake", results, summary=lambda records, interrupted: "")


def run_fake(tmp_path, device, **probe):
    out = tmp_path / "fake.jsonl"
    code = harness.run_probe(ListProbe(device, **probe), ProbeOptions(out=str(out), run_id="r1"))
    return code, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


@pytest.mark.parametrize("power_ns, flagged", [(50e9, False), (60e9, True)])
def test_harness_records_carry_the_window_and_the_flag_above_five_percent(tmp_path, monkeypatch, power_ns, flagged):
    """Counters growing linearly over the whole run: every window holds power for exactly 5% (not throttled)
    or 6% (throttled) of its span, whatever its length."""
    timeline = write_lines(
        tmp_path / "t.jsonl",
        [
            {"t": 0, "sm_clock_mhz": 1410, "temp_c": 66, "throttle_ns": {"power": 0}},
            {"t": 1000, "sm_clock_mhz": 1410, "temp_c": 66, "throttle_ns": {"power": power_ns}},
        ],
    )
    monkeypatch.setenv("MLBENCH_FAULTS", f"telemetry={timeline}")
    code, records = run_fake(tmp_path, {"type": "cpu", "name": "fake", "index": None}, count=3)
    assert code == 0 and len(records) == 3
    for record in records:
        telemetry = record["telemetry"]
        assert telemetry["backend"] == "replay" and telemetry["samples"] >= 2
        assert telemetry["throttle"] == {"power": power_ns / 1e12}
        assert telemetry["sm_clock_mhz"] == {"min": 1410.0, "median": 1410.0, "max": 1410.0}
        assert ("throttled" in record.get("flags", [])) == flagged
    assert records[1]["flags"][0] == "noisy"  # the probe's own flags are kept
    starts = [(r["telemetry"]["start_s"], r["telemetry"]["span_s"]) for r in records]
    assert all(a + span <= b for (a, span), (b, _) in zip(starts, starts[1:]))  # windows in order, not overlapping


def test_harness_refuses_a_bad_replay_file_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBENCH_FAULTS", f"telemetry={write_lines(tmp_path / 't.jsonl', [{'t': 'x'}])}")
    with pytest.raises(UsageError, match="must be a number"):
        run_fake(tmp_path, {"type": "cpu", "name": "fake", "index": None})
    assert not (tmp_path / "fake.jsonl").exists()


def test_harness_without_a_backend_and_for_a_storage_device(tmp_path, monkeypatch):
    monkeypatch.delenv("MLBENCH_FAULTS", raising=False)
    code, records = run_fake(tmp_path, {"type": "xpu", "name": "fake", "index": 0}, count=1)
    assert code == 0 and records[0]["telemetry"] == {"backend": None, "reason": "no telemetry backend for xpu devices"}
    (tmp_path / "fake.jsonl").unlink()
    code, records = run_fake(tmp_path, {"type": "storage", "name": "/mnt", "index": None}, count=1)
    assert code == 0 and "telemetry" not in records[0]


def test_replay_stands_in_for_device_zero_only(tmp_path):
    timeline = write_lines(tmp_path / "t.jsonl", TIMELINE)
    faults = Faults(telemetry_file=timeline)
    assert isinstance(open_source(DeviceRef("cuda", 0), faults), ReplaySource)
    assert not isinstance(open_source(DeviceRef("cuda", 1), faults), ReplaySource)


def test_watch_of_several_devices_gives_each_record_its_own(tmp_path):
    faults = Faults(telemetry_file=write_lines(tmp_path / "t.jsonl", TIMELINE))
    clock = FakeClock(0.0)
    with Watch([DeviceRef("cpu"), DeviceRef("mps", 1)], faults=faults, clock=clock, thread=False) as watch:
        mark = watch.mark()
        clock.t = 25.0
        own = watch.fields(mark, {"type": "cpu", "name": "x", "index": None})
        assert own["telemetry"]["backend"] == "replay" and own["flags"] == ["throttled"]
        mark = watch.mark()
        clock.t = 26.0
        other = watch.fields(mark, {"type": "cuda", "name": "y", "index": 5}, flags=["noisy"])
    replay, mps = other["telemetry"]["devices"]
    assert replay["device"] == "cpu" and replay["backend"] == "replay"
    assert mps == {"device": "mps:1", "backend": None, "reason": "no telemetry backend for mps devices"}
    assert replay["throttle"] == {"power": 0.0, "thermal": 0.0, "hw_slowdown": 0.4}  # 25..26 s: 4e9 ns per 10 s
    assert other["flags"] == ["noisy", "throttled"]  # one of the devices was throttled
