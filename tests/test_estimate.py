"""`mlbench estimate`: the rules of thumb by hand-computed values, fed by the reference run relabelled as an H100
run (and copies of it), through the real entry point (`python -m mlbench estimate`)."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, run_module
from reference_run import records, relabelled, scaled, write_run

H100_BF16_PEAK = 989.0  # mlbench/data/specs.csv, h100-sxm


def estimate(*args, cwd=None):
    return run_module("mlbench", "estimate", *args, cwd=cwd)


def estimate_json(*args) -> dict:
    proc = estimate(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("offers")
    base = relabelled(root)
    return base, scaled(base, root, "gpu-slower", {("mamf", None): 0.9})


def best_bf16_mamf(run) -> float:
    """The run's MAMF read straight from its records: the best median TFLOPS of its ok bf16 shapes."""
    return max(
        r["metrics"]["tflops"]
        for r in read_jsonl(run / "mamf.jsonl")
        if r["status"] == "ok" and r["params"]["dtype"] == "bf16"
    )


def test_the_80b_example_by_hand():
    """80B on 80 GB: 80 x 18 x 1.25 / 80 = 22.5 -> 23 to train; 80 x 2 x 1.25 / 80 = 2.5 -> 3 to serve."""
    out = estimate_json("--params", "80", "--gpu-mem", "80")
    assert (out["training_gpus"], out["inference_gpus"]) == (23, 3)
    assert out["training_seconds"] is None and out["cost"] is None
    text = estimate("--params", "80", "--gpu-mem", "80").stdout
    assert "23" in text and "3" in text


def test_gpu_counts_are_exact_for_decimal_inputs():
    """2.6 x 18 x 1.25 / 0.3 is 195 exactly (floating point says 195.00000000000003, whose ceiling is 196)."""
    from mlbench.estimate import inference_gpus, training_gpus

    assert training_gpus(2.6, 0.3) == 195
    assert training_gpus(64, 80) == 18  # 64 x 22.5 / 80 = 18.0: no extra GPU
    assert inference_gpus(64, 80) == 2
    assert inference_gpus(80, 141) == 2  # 200 / 141 = 1.42


def test_datasheet_offer_time_and_cost_by_hand():
    out = estimate_json("--params", "80", "--gpu", "h100-sxm", "--tokens", "2T", "--price", "2.5")
    flops = 6 * 80e9 * 2e12  # 9.6e23
    rate = 0.5 * H100_BF16_PEAK * 1e12  # the assumed MFU of the dense bf16 peak
    seconds = flops / (23 * rate)
    assert out["training_flops"] == pytest.approx(flops)
    assert out["training_gpus"] == 23 and out["gpu_mem_gb"] == 80
    assert out["training_seconds"] == pytest.approx(seconds)
    assert out["training_days"] == pytest.approx(seconds / 86400)
    assert out["cost"] == pytest.approx(23 * seconds / 3600 * 2.5)
    assert out["mfu_assumed"] is True and out["rate_source"] == "datasheet peak x MFU"


def test_a_measured_run_sets_the_speed_from_its_mamf(runs):
    base, _ = runs
    mamf = best_bf16_mamf(base)
    out = estimate_json("--params", "80", "--run", str(base), "--tokens", "1G", "--price", "3")
    assert out["gpu"] == "NVIDIA H100 SXM" and out["gpu_mem_gb"] == 80  # the registry's part of the run's GPU
    assert out["base_tflops"] == pytest.approx(mamf)
    seconds = 6 * 80e9 * 1e9 / (23 * 0.5 * mamf * 1e12)
    assert out["training_seconds"] == pytest.approx(seconds)
    assert out["cost"] == pytest.approx(23 * seconds / 3600 * 3)
    given = estimate_json("--params", "80", "--run", str(base), "--tokens", "1G", "--mfu", "0.4")
    assert given["training_seconds"] == pytest.approx(seconds * 0.5 / 0.4) and given["mfu_assumed"] is False
    text = estimate("--params", "80", "--run", str(base), "--tokens", "1G").stdout
    assert "assumed" in text and "measured MAMF" in text


def test_the_measured_rate_of_mlbench_train_wins(runs, tmp_path):
    base, _ = runs
    files = records(base)

    def train(world_size, tflops):
        metrics = {"tokens_per_s": 1000.0, "tflops_per_gpu": tflops, "mfu": tflops / H100_BF16_PEAK}
        return dict(
            files["mamf.jsonl"][0], probe="train", params={"model": "tiny", "world_size": world_size}, metrics=metrics
        )

    # one GPU alone at 450, the 8-GPU job (communication included) at 400: the job's rate is used
    run = write_run(tmp_path / "with-train", {**files, "train.jsonl": [train(1, 450.0), train(8, 400.0)]})
    out = estimate_json("--params", "80", "--run", str(run), "--flops", "1e24")
    assert out["rate_source"] == "measured by mlbench train" and out["tflops_per_gpu"] == 400.0
    assert out["training_seconds"] == pytest.approx(1e24 / (23 * 400e12))
    assert out["mfu"] == pytest.approx(400 / H100_BF16_PEAK)
    overridden = estimate_json("--params", "80", "--run", str(run), "--flops", "1e24", "--mfu", "0.5")
    assert overridden["rate_source"] == "measured MAMF x MFU"
    assert overridden["offers"][0]["notes"] == ["--mfu given: the measured rate of mlbench train is not used"]


def test_offers_side_by_side_ranked_by_time_and_by_cost(runs):
    """The slower copy (MAMF x 0.9) at 1.5 per GPU-hour against the base at 2.0: slower, and cheaper
    (1.5 / 0.9 = 1.67 < 2.0 per unit of work)."""
    base, slower = runs
    out = estimate_json(
        "--params", "80", "--run", str(base), "--run", str(slower), "--tokens", "1G", "--price", "2.0", "--price", "1.5"
    )
    offers = {o["name"]: o for o in out["offers"]}
    assert offers["gpu-slower"]["training_seconds"] == pytest.approx(offers["gpu-base"]["training_seconds"] / 0.9)
    assert offers["gpu-slower"]["cost"] == pytest.approx(offers["gpu-base"]["cost"] * 1.5 / (2.0 * 0.9))
    assert out["ranked_by_time"] == ["gpu-base", "gpu-slower"]
    assert out["ranked_by_cost"] == ["gpu-slower", "gpu-base"]
    assert out["cost"] == offers["gpu-slower"]["cost"]  # the top level is the cheapest offer
    text = estimate(
        "--params", "80", "--run", str(base), "--run", str(slower), "--tokens", "1G", "--price", "2.0", "--price", "1.5"
    ).stdout
    assert "Ranked by time: gpu-base, gpu-slower." in text and "Ranked by cost: gpu-slower, gpu-base." in text


def test_more_gpus_shorten_the_time_not_the_cost():
    few = estimate_json("--params", "80", "--gpu", "h100-sxm", "--tokens", "2T", "--price", "2")
    many = estimate_json("--params", "80", "--gpu", "h100-sxm", "--tokens", "2T", "--price", "2", "--gpus", "1024")
    assert many["gpus"] == 1024
    assert many["training_seconds"] == pytest.approx(few["training_seconds"] * 23 / 1024)
    assert many["cost"] == pytest.approx(few["cost"])


@pytest.mark.parametrize(
    "text, value", [("2T", 2e12), ("1.5t", 1.5e12), ("300G", 3e11), ("7e9", 7e9), ("2k", 2000), ("10", 10)]
)
def test_token_counts_use_decimal_suffixes(text, value):
    from mlbench.estimate import parse_count

    assert float(parse_count(text)) == value


@pytest.mark.parametrize(
    "args",
    [
        ["--params", "0", "--gpu-mem", "80"],
        ["--params", "-5", "--gpu-mem", "80"],
        ["--params", "80", "--gpu-mem", "0"],
        ["--params", "eighty", "--gpu-mem", "80"],
        ["--params", "80"],  # no GPU memory and no offer to take it from
        ["--params", "80", "--gpu-mem", "80", "--tokens", "2T"],  # a budget without a speed
        ["--params", "80", "--gpu", "h100-sxm", "--tokens", "2X"],
        ["--params", "80", "--gpu", "h100-sxm", "--tokens", "2TiB"],
        ["--params", "80", "--gpu", "h100-sxm", "--tokens", "0"],
        ["--params", "80", "--gpu", "h100-sxm", "--tokens", "2T", "--flops", "1e24"],
        ["--params", "80", "--gpu", "h100-sxm", "--mfu", "1.5"],
        ["--params", "80", "--gpu", "h100-sxm", "--price", "-1"],
        ["--params", "80", "--gpu", "h100-sxm", "--gpu", "h200", "--price", "1", "--price", "2", "--price", "3"],
        ["--params", "80", "--gpu", "no-such-part"],
        ["--params", "80", "--gpu", "h100-sxm", "--gpus", "8"],  # fewer than the 23 that hold the training state
        ["--params", "80", "--run", "/no/such/run"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, cli):
    result = cli("estimate", *args)
    assert result.exit_code == 2, (args, result.output)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mlbench: error: "), result.stderr


def test_bad_input_through_the_entry_point():
    proc = estimate("--params", "80", "--gpu-mem", "80", "--tokens", "2X")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mlbench: error: --tokens '2X': expected a number") and proc.stderr.count("\n") == 1


def test_a_run_without_speed_figures_is_bad_input_for_a_budget(tmp_path):
    run = write_run(tmp_path / "storage-only", {"diskio.jsonl": records(relabelled(tmp_path))["diskio.jsonl"]})
    proc = estimate("--params", "80", "--gpu-mem", "80", "--run", str(run), "--tokens", "1T")
    assert proc.returncode == 2 and "no speed" in proc.stderr
    counts = estimate_json("--params", "80", "--gpu-mem", "80", "--run", str(run))
    assert counts["training_gpus"] == 23  # GPU counts need no speed
