"""The training plan (torch-free): FLOP and parameter counts, presets, the memory and batch rules, weak-scaling
points, the expected MFU, options round trips and the step of `mlbench run`."""

from __future__ import annotations

import pytest

from mlbench import specs
from mlbench.acceptance.plan import NodeLayout, build, select
from mlbench.exitcodes import UsageError
from mlbench.train.plan import (
    PRESETS,
    ModelShape,
    Parallel,
    TrainOptions,
    estimate_memory,
    expected_mfu,
    fit_problem,
    grad_accum_for,
    groups_of,
    layers_that_fit,
    make_plan,
    parallel_for,
    scaling_sizes,
    tflops_per_device,
    tokens_per_s,
    world_size_hint,
)

SMALL = ModelShape(layers=1, hidden=8, heads=2, ffn=16, vocab=10, seq_len=4)


def test_flop_and_parameter_counts_by_hand():
    # one block: qkv + out = 4 * 8 * 8 = 256, gate + up + down = 3 * 8 * 16 = 384; embedding 10 * 8 = 80
    assert SMALL.matmul_params == 256 + 384 + 80 == 720
    assert SMALL.params_count == 720 + 3 * 8  # two norms per block and the final one
    assert SMALL.attention_flops_per_token == 12 * 1 * 4 * 8 == 384
    assert SMALL.flops_per_token == 6 * 720 + 384 == 4704


def test_presets_have_the_sizes_they_are_named_for():
    one_b = make_plan("cuda", TrainOptions(preset="1b")).shape
    # 16 x (4 x 2048^2 + 3 x 2048 x 8192) + 128256 x 2048
    assert one_b.matmul_params == 16 * 67_108_864 + 262_668_288 == 1_336_410_112
    assert 1.2e9 < one_b.params_count < 1.4e9
    tiny = make_plan("cpu", TrainOptions()).shape  # the CPU default
    assert tiny.params_count == 117_056 and tiny.flops_per_token == 798_720
    eight = make_plan("cuda", TrainOptions(preset="8b"))
    assert eight.sized_to_device and eight.with_layers(32).shape.matmul_params > 7.5e9
    assert make_plan("cuda", TrainOptions()).model == "1b"  # accelerators default to 1b
    assert make_plan("cpu", TrainOptions(layers="3")).model == "custom"


def test_overrides_and_size_grammar():
    plan = make_plan(
        "cpu", TrainOptions(preset="1b", hidden="1K", heads="8", seq_len="4K", layers="2", micro_batch="2")
    )
    assert (plan.shape.hidden, plan.shape.heads, plan.shape.seq_len, plan.shape.layers) == (1024, 8, 4096, 2)
    assert plan.shape.ffn == 4096  # the preset's ffn/hidden ratio (4) kept
    assert plan.micro_batch == 2 and plan.tokens_per_device_step == 2 * 4096


@pytest.mark.parametrize(
    "options, message",
    [
        (TrainOptions(preset="huge"), "unknown --preset"),
        (TrainOptions(hidden="100", heads="3"), "not a multiple of --heads"),
        (TrainOptions(hidden="12", heads="4"), "must be even"),
        (TrainOptions(layers="0"), "at least 1"),
        (TrainOptions(seq_len="2X"), "bad --seq-len"),
        (TrainOptions(parallel="tp"), "bad --parallel"),
        (TrainOptions(dtype="fp8"), "bad --dtype"),
        (TrainOptions(steps=3, duration_s=5.0), "not both"),
        (TrainOptions(duration_s=-1.0), "--duration"),
        (TrainOptions(warmup=-1), "--warmup"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        make_plan("cpu", options)


def test_global_batch_splits_over_devices_or_is_refused():
    assert grad_accum_for(None, 4, 8) == 1
    assert grad_accum_for(64, 4, 8) == 2  # 64 sequences = 8 devices x 4 x 2 accumulated
    with pytest.raises(UsageError, match="does not divide over 8 device"):
        grad_accum_for(60, 4, 8)
    with pytest.raises(UsageError, match="not a multiple of 8 device"):
        grad_accum_for(40, 4, 8)
    plan = make_plan("cpu", TrainOptions(global_batch="32"), world_size=2)
    assert plan.grad_accum == 2 and plan.global_batch_tokens(2) == 2 * 8 * 2 * 64


def test_world_size_comes_from_torchrun_or_nproc():
    assert world_size_hint(TrainOptions(), {"WORLD_SIZE": "16", "LOCAL_RANK": "3"}) == 16
    assert world_size_hint(TrainOptions(nproc_per_node=4), {}) == 4
    assert world_size_hint(TrainOptions(), {}) is None


def test_memory_estimate_by_hand_and_the_fit_rule():
    need = estimate_memory(SMALL, micro_batch=2, dtype="bf16")
    params = 744
    assert need.state_bytes == params * 16 + params * 2  # fp32 state + bf16 copies
    # per token: 22 x 8 + 8 x 16 (one block) + 12 x 10 (logits) + 10 x 8
    assert need.activation_bytes == 2 * 4 * (176 + 128 + 120 + 80)
    assert fit_problem(SMALL, 2, "bf16", need.total_bytes) is None
    problem = fit_problem(SMALL, 2, "bf16", need.total_bytes - 1)
    assert "does not fit one device" in problem and "--micro-batch 1 fits" in problem
    assert "fewer --layers" in fit_problem(SMALL, 2, "bf16", need.state_bytes)
    sharded = estimate_memory(SMALL, 2, "fp32", shards=4)
    assert sharded.state_bytes == params * 16 // 4  # fp32: no bf16 copies


def test_layers_that_fit_one_device():
    preset = PRESETS["8b"]
    shape = make_plan("cuda", TrainOptions(preset="8b")).shape
    usable = 80 * 2**30
    layers = layers_that_fit(preset, shape, 1, "bf16", usable)

    def need(n):
        return estimate_memory(
            ModelShape(n, shape.hidden, shape.heads, shape.ffn, shape.vocab, shape.seq_len), 1, "bf16"
        ).total_bytes

    assert 1 <= layers < preset.max_layers
    assert need(layers) <= usable < need(layers + 1)
    assert layers_that_fit(preset, shape, 1, "bf16", 10**15) == preset.max_layers
    assert layers_that_fit(preset, shape, 1, "bf16", 2**30) == 0


def test_weak_scaling_points_and_groups():
    assert scaling_sizes(8, 8, 1) == (1, 2, 4, 8)
    assert scaling_sizes(6, 6, 1) == (1, 2, 6)  # every size divides the world
    assert scaling_sizes(32, 8, 4) == (1, 8, 16, 32)  # whole nodes across a cluster
    assert scaling_sizes(24, 8, 3) == (1, 8, 24)
    assert scaling_sizes(1, 1, 1) == (1,)
    assert scaling_sizes(8, 8, 1, enabled=False) == (8,)
    assert groups_of(2, 4) == [[0, 1], [2, 3]]
    assert groups_of(4, 4) == [[0, 1, 2, 3]]
    assert parallel_for("auto", 1, 1) == Parallel.NONE
    assert parallel_for("auto", 8, 1) == Parallel.DDP
    assert parallel_for("auto", 16, 2) == Parallel.FSDP
    assert parallel_for("fsdp", 2, 1) == Parallel.FSDP


def test_rates_from_step_time():
    assert tokens_per_s(8192, 0.5) == 16384
    assert tflops_per_device(SMALL, 1000, 2.0) == pytest.approx(4704 * 1000 / 2.0 / 1e12)


def test_expected_mfu_from_the_data_file_or_the_spec_row():
    h100 = specs.lookup("NVIDIA H100 80GB HBM3")
    assert expected_mfu(h100, "1b").value == pytest.approx(0.418)
    assert "llm-foundry" in expected_mfu(h100, "1b").source
    assert expected_mfu(h100, "tiny") is None
    assert expected_mfu(None, "1b") is None
    own = specs.Spec("x", "X", {**h100.row, "train_1b_expected_mfu": "0.5"})
    assert expected_mfu(own, "1b").value == 0.5


def test_options_round_trip_through_the_command_line():
    from mlbench.train.cli import command

    options = TrainOptions(
        preset="8b",
        duration_s=60.0,
        parallel="fsdp",
        scaling=False,
        compile=True,
        layers="4",
        out="t.jsonl",
        nproc_per_node=8,
    )
    argv = options.to_argv()
    assert "--nproc-per-node" not in argv  # launcher-only
    again = TrainOptions(**command.make_context("train", argv).params)
    assert again == options.replace(nproc_per_node=None)


def _train_step(plan):
    return next(s for s in plan.steps if s.name == "train").processes[0]


def test_mlbench_run_trains_on_every_local_gpu_and_fsdp_across_nodes():
    from mlbench.train.cli import command

    def parsed(process, skip=0):
        return TrainOptions(**command.make_context("train", list(process.args[skip:])).params)

    standard = _train_step(build("standard", NodeLayout("g1", "cuda", 8), "/d", "r", select(None, None)))
    assert standard.module == "mlbench.train" and standard.args[:2] == ("--nproc-per-node", "8")
    assert parsed(standard, 2).duration_s == 10.0 and parsed(standard, 2).scaling
    quick = _train_step(build("quick", NodeLayout("n1", "cpu", 0), "/d", "r", select(None, None)))
    assert quick.args[:2] == ("--nproc-per-node", "2") and parsed(quick, 2).quick and parsed(quick, 2).device == "cpu"
    node = NodeLayout("g2", "cuda", 8, nodes=4, node_rank=2, master_addr="head", master_port=29400)
    full = _train_step(build("full", node, "/d", "r", select(None, None)))
    args = " ".join(full.args)
    assert full.module == "torch.distributed.run" and full.out == "g2/train.jsonl"
    assert "--nnodes 4" in args and "--rdzv-endpoint head:29402" in args and "-m mlbench.train" in args
    options = parsed(full, full.args.index("mlbench.train") + 1)
    assert (options.preset, options.parallel, options.duration_s) == ("8b", "fsdp", 60.0)
