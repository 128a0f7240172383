"""MatmulProbe behaviour: the spot check, the above-peak flag, out-of-memory skips."""

import pytest
import torch

from mlbench.device import resolve
from mlbench.mamf import probe as probe_module
from mlbench.mamf.plan import MamfPlan, Shape, best_record, parse_dtype
from mlbench.mamf.probe import MatmulProbe, make_operands, spot_check
from mlbench.mamf.probe import results as run


@pytest.fixture(scope="module")
def cpu():
    return resolve("cpu")


def test_spot_check_is_small_for_a_right_result_and_large_for_a_wrong_one(cpu):
    dtype = parse_dtype("bf16")
    ops = make_operands(Shape(64, 64, 256), dtype, cpu)
    ops.call()
    assert spot_check(ops, dtype) < dtype.check_tolerance
    ops.c[3, 5] += 1000.0  # one corrupted element
    assert spot_check(ops, dtype) > 1.0


def test_operands_are_random_not_zeros(cpu):
    ops = make_operands(Shape(32, 16, 64), parse_dtype("fp32"), cpu)
    assert ops.a.std() > 0.5 and ops.b.std() > 0.5
    assert ops.b.shape == (64, 16) and not ops.b.is_contiguous()  # B made (n, k) then transposed


def test_a_corrupted_matmul_is_an_error_record(cpu, monkeypatch):
    real = probe_module.make_operands

    def broken(shape, dtype, device, seed=0, fast_accum=False):
        ops = real(shape, dtype, device, seed, fast_accum)
        ops.call = lambda: ops.c.fill_(1.0)  # wrong "result"
        return ops

    monkeypatch.setattr(probe_module, "make_operands", broken)
    with MatmulProbe(cpu, parse_dtype("fp32"), quick=True) as probe:
        result = probe.measure(Shape(64, 64, 64))
    assert result.status == "error" and "spot check failed" in result.error and "check_failed" in result.flags


def test_above_the_spec_peak_is_flagged_not_dropped(cpu):
    with MatmulProbe(cpu, parse_dtype("fp32"), quick=True, peak_tflops=1e-6) as probe:
        result = probe.measure(Shape(64, 64, 64))
    assert result.status == "ok"
    assert "above_spec_peak" in result.flags
    assert result.metrics["pct_of_peak"] > 100


def test_out_of_memory_shapes_are_skipped_and_the_sweep_goes_on(cpu, monkeypatch):
    monkeypatch.setattr(cpu, "free_memory_bytes", lambda: 200_000)  # ~ room for a 64^3 fp32 problem only
    plan = MamfPlan("sweep", shapes=(Shape(64, 64, 64), Shape(4096, 4096, 4096), Shape(32, 32, 32)), warmup_s=0)
    with MatmulProbe(cpu, parse_dtype("fp32"), quick=True) as probe:
        results = list(run(plan, probe))
    assert [r.status for r in results] == ["ok", "skipped", "ok"]
    assert "out of memory" in results[1].error


def test_real_allocation_failure_is_classified_as_oom(cpu, monkeypatch):
    def fail(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(probe_module, "make_operands", fail)
    with MatmulProbe(cpu, parse_dtype("bf16"), quick=True) as probe:
        result = probe.measure(Shape(64, 64, 64))
    assert result.status == "skipped" and "out of memory" in result.error


def test_best_record_prefers_confirmed_search_results():
    def rec(tflops, phase=None):
        params = {"m": 1, "n": 1, "k": 1, "dtype": "bf16"}
        if phase:
            params["phase"] = phase
        return {"probe": "mamf", "status": "ok", "params": params, "metrics": {"tflops": tflops}}

    records = [rec(900, "coarse"), rec(700, "confirm"), rec(750, "confirm"), {"status": "skipped", "params": {}}]
    assert best_record(records)["metrics"]["tflops"] == 750  # a lucky short measurement cannot win
    assert best_record([rec(1), rec(3), rec(2)])["metrics"]["tflops"] == 3
    assert best_record([]) is None


def test_tf32_decision_from_the_probe_result():
    from mlbench.mamf.probe import tf32_decision, tf32_probe_expected

    exact, rounded = tf32_probe_expected(256)
    assert (exact, rounded) == (256.0625, 256.0)  # 256 x (1 + 2^-12): needs 12 bits past the leading one
    assert tf32_decision([256.0, 256.0], exact, rounded) is True  # inputs rounded to tf32's 10 bits
    assert tf32_decision([256.0625, 256.0625], exact, rounded) is False  # float32 throughout
    assert tf32_decision([256.0, 256.0625], exact, rounded) is None  # some of each: no finding
    assert tf32_decision([300.0], exact, rounded) is None
    assert tf32_decision([], exact, rounded) is None


def test_tf32_gating_follows_what_the_library_does(monkeypatch):
    from mlbench.device import Device, DeviceInfo

    gpu = Device(torch.device("cuda", 0), DeviceInfo("cuda", 0, "AMD Instinct MI300X"))
    tf32 = parse_dtype("tf32")
    monkeypatch.setattr(probe_module, "tf32_effective", lambda device, allow_tf32: False)
    monkeypatch.setattr(probe_module, "is_rocm", lambda: True)
    why = probe_module.unsupported_reason(tf32, gpu)
    assert "tf32 is not in effect" in why and "HIPBLASLT_ALLOW_TF32=1" in why
    monkeypatch.setattr(probe_module, "tf32_effective", lambda device, allow_tf32: True)
    assert probe_module.unsupported_reason(tf32, gpu) is None  # tf32 in effect, whatever the environment says


def test_fp32_records_say_tf32_was_not_in_effect(cpu):
    with MatmulProbe(cpu, parse_dtype("fp32"), quick=True) as probe:
        result = probe.measure(Shape(64, 64, 64))
    assert result.params["tf32_effective"] is False  # the CPU computes float32 exactly
    assert result.params["llc_bytes"] == cpu.info.llc_bytes
    with MatmulProbe(cpu, parse_dtype("bf16"), quick=True) as probe:
        assert "tf32_effective" not in probe.measure(Shape(64, 64, 64)).params
