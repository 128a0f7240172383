"""The model, task and measuring pieces: the analytic FLOP count against torch's FLOP counter, the parameter
count, the learnable task, the precision choice, the loss rule and this device's MAMF from the run directory."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from mlbench.records import Result, Status, hostname  # noqa: E402
from mlbench.train.model import PermutationTask, Transformer, loss_of  # noqa: E402
from mlbench.train.plan import ModelShape, Parallel  # noqa: E402
from mlbench.train.probe import Precision, Step, loss_verdict, own_mamf_tflops, precision_for  # noqa: E402

SHAPES = [ModelShape(2, 32, 4, 64, 50, 16), ModelShape(1, 48, 3, 96, 100, 24)]


@pytest.mark.parametrize("shape", SHAPES)
def test_analytic_flops_match_torchs_flop_counter(shape):
    """One forward and backward pass counted by torch.utils.flop_counter equals flops_per_token x tokens.

    torch's counter has no formula for the CPU flash-attention kernel, so attention runs on the math
    backend here, whose matrix products it counts (the full seq_len^2 scores, as the formula does)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = Transformer(shape)
    tokens = torch.randint(0, shape.vocab, (3, shape.seq_len + 1))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss_of(model, tokens).backward()
    assert counter.get_total_flops() == shape.flops_per_token * 3 * shape.seq_len


def test_parameter_counts_match_the_module():
    shape = SHAPES[0]
    model = Transformer(shape)
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == shape.params_count
    assert sum(p.numel() for p in params if p.dim() == 2) == shape.matmul_params  # tied: the embedding once
    assert model(torch.zeros(2, shape.seq_len, dtype=torch.long)).shape == (2, shape.seq_len, shape.vocab)


def test_task_walks_one_permutation_and_each_rank_gets_its_own_sequences():
    a = PermutationTask(vocab=300, seq_len=12, device="cpu", data_seed=1)
    b = PermutationTask(vocab=300, seq_len=12, device="cpu", data_seed=2)
    assert torch.equal(a.perm, b.perm) and sorted(a.perm.tolist()) == list(range(300))
    batch = a.batch(5)
    assert batch.shape == (5, 13) and batch.max() < 300
    assert torch.equal(batch[:, 1:], a.perm[batch[:, :-1]])  # token t+1 = perm[token t]
    assert not torch.equal(batch, b.batch(5))
    assert PermutationTask(vocab=128256, seq_len=4, device="cpu").alphabet == 1024


def test_a_few_steps_make_the_loss_go_down():
    shape = ModelShape(2, 64, 4, 176, 256, 32)
    torch.manual_seed(0)
    model = Transformer(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step = Step(
        model,
        optimizer,
        PermutationTask(shape.vocab, shape.seq_len, "cpu"),
        micro_batch=4,
        grad_accum=2,
        parallel=Parallel.NONE,
        device=torch.device("cpu"),
        precision=Precision("fp32"),
    )
    for _ in range(8):
        step()
    losses = step.loss_values()
    assert len(losses) == 8
    assert losses[0] == pytest.approx(math.log(shape.vocab), rel=0.05)  # a fresh model is nearly uniform
    assert losses[-1] < losses[0] - 0.3


class FakeDevice:
    def __init__(self, kind, capability=None):
        self.type = kind
        self._capability = capability

    def capability(self):
        return self._capability


def test_precision_bf16_where_supported_else_fp32_with_a_note():
    assert precision_for(FakeDevice("cuda", (9, 0)), "bf16") == Precision("bf16")
    assert precision_for(FakeDevice("cuda", None), "bf16") == Precision("bf16")  # ROCm
    old = precision_for(FakeDevice("cuda", (7, 0)), "bf16")
    assert old.name == "fp32" and "7.0" in old.note
    assert precision_for(FakeDevice("cuda", (9, 0)), "fp32") == Precision("fp32")
    cpu = precision_for(FakeDevice("cpu"), "bf16")
    assert cpu.name == ("bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32")
    assert precision_for(FakeDevice("mps"), "bf16").note


def _result(first, last):
    return Result({"model": "tiny"}, {"loss_first": first, "loss_last": last})


def test_a_step_that_does_not_train_is_a_failed_measurement():
    assert loss_verdict(_result(5.5, 3.0)).status == Status.OK
    flat = loss_verdict(_result(5.5, 5.5))
    assert flat.status == Status.ERROR and "did not go down" in flat.error and "loss_not_decreasing" in flat.flags
    nan = loss_verdict(_result(5.5, float("nan")))
    assert nan.status == Status.ERROR and "loss_not_finite" in nan.flags


class Info:
    index, name = 0, "Some GPU"


def _mamf_record(tflops, *, dtype="bf16", host=None, index=0, name="Some GPU", phase=None):
    params = {"m": 1, "n": 1, "k": 1, "dtype": dtype}
    if phase:
        params["phase"] = phase
    return {
        "probe": "mamf",
        "host": host or hostname(),
        "device": {"type": "cuda", "name": name, "index": index},
        "params": params,
        "metrics": {"tflops": tflops},
        "status": "ok",
    }


def test_this_devices_mamf_comes_from_the_run_directory(tmp_path):
    assert own_mamf_tflops(tmp_path / "absent", Info, "bf16") is None
    node = tmp_path / "node1"
    node.mkdir()
    records = [
        _mamf_record(700.0),
        _mamf_record(650.0, phase="confirm"),
        _mamf_record(900.0, dtype="fp8"),
        _mamf_record(999.0, index=1),
        _mamf_record(998.0, host="elsewhere"),
        _mamf_record(997.0, name="Other"),
    ]
    (node / "mamf-gpu0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert own_mamf_tflops(tmp_path, Info, "bf16") == 650.0  # a search's confirmed shape is its answer
    assert own_mamf_tflops(tmp_path, Info, "fp32") is None
