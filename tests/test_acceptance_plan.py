"""The acceptance plan per profile, --only/--skip, the per-GPU fan-out, cluster mode."""

import pytest

from mlbench.acceptance.plan import AcceptancePlan, NodeLayout, build, describe, select
from mlbench.exitcodes import UsageError

CPU = NodeLayout("n1", "cpu", 0)
GPU8 = NodeLayout("g1", "cuda", 8)


def test_select():
    assert select(None, None) == ["node", "mamf", "membw", "collectives", "diskio", "train", "fabric"]
    assert select("diskio,mamf", None) == ["mamf", "diskio"]  # plan order, not the order given
    assert select(None, "collectives") == ["node", "mamf", "membw", "diskio", "train", "fabric"]
    for only, skip in (("bogus", None), (None, "mamf,x"), ("mamf", "diskio"), ("", None)):
        with pytest.raises(UsageError):
            select(only, skip)


@pytest.mark.parametrize("profile", ["quick", "standard", "full"])
def test_every_profile_has_every_probe_and_grows(profile):
    plan = build(profile, CPU, "/data", "r", select(None, None))
    assert [s.name for s in plan.steps] == ["node", "mamf", "membw", "collectives", "diskio", "train"]
    assert plan.estimate_s() > 0


def test_profiles_are_ordered_by_time_and_quick_uses_quick():
    times = [build(p, GPU8, "/d", "r", select(None, None)).estimate_s() for p in ("quick", "standard", "full")]
    assert times[0] < times[1] < times[2]
    assert times[0] <= 180  # quick: about 2 minutes on a GPU node
    quick = build("quick", CPU, "/d", "r", select(None, None))
    for step in quick.steps[1:]:
        assert "--quick" in step.processes[0].args


def options_of(process):
    """The options object a probe process's command line builds, parsed by the probe's own CLI."""
    import importlib

    probe = importlib.import_module(process.module + ".cli")
    command = probe.command
    options_class = next(
        c
        for c in vars(probe).values()
        if isinstance(c, type) and c.__name__.endswith("Options") and c.__module__.endswith(".plan")
    )
    return options_class(**command.make_context(command.name, list(process.args)).params)


def test_one_mamf_and_membw_process_per_gpu():
    plan = build("standard", GPU8, "/d", "r", select("mamf,membw,collectives", None))
    mamf, membw, links, coll = plan.steps
    assert [options_of(p).device for p in mamf.processes] == [f"cuda:{i}" for i in range(8)]
    assert [p.out for p in membw.processes] == [f"membw-gpu{i}.jsonl" for i in range(8)]
    assert all(options_of(p).ops == "copy,read,write,triad" for p in membw.processes) and membw.concurrent
    # the links one GPU at a time, then one process for the whole peer-to-peer matrix
    assert not links.concurrent
    assert [(options_of(p).device, options_of(p).ops) for p in links.processes[:8]] == [
        (f"cuda:{i}", "h2d,d2h") for i in range(8)
    ]
    assert (options_of(links.processes[-1]).device, options_of(links.processes[-1]).ops) == ("cuda:0", "p2p")
    assert coll.processes[0].args[:2] == ("--nproc-per-node", "8")  # all local GPUs in one job
    assert not coll.node_local


def test_a_one_gpu_node_keeps_membw_in_one_process():
    from mlbench.membw.plan import MembwOptions

    plan = build("quick", NodeLayout("g", "cuda", 1), "/d", "r", select("membw", None))
    (membw,) = plan.steps
    (process,) = membw.processes
    assert options_of(process) == MembwOptions(device="cuda:0", quick=True, out="membw.jsonl")


def test_cpu_collectives_use_two_gloo_ranks_and_storage_goes_to_io_dir():
    plan = build("quick", CPU, "/scratch", "r", select("collectives,diskio", None))
    assert plan.steps[0].processes[0].args[:2] == ("--nproc-per-node", "2")
    diskio = options_of(plan.steps[1].processes[0])
    assert diskio.directory == "/scratch" and diskio.quick


def test_cluster_mode_launches_collectives_through_torchrun_across_nodes():
    node = NodeLayout("g2", "cuda", 8, nodes=4, node_rank=2, master_addr="head", master_port=29400)
    plan = build("quick", node, "/d", "r", select(None, None))
    coll = next(s for s in plan.steps if s.name == "collectives").processes[0]
    assert coll.module == "torch.distributed.run"
    args = " ".join(coll.args)
    assert "--nnodes 4" in args and "--nproc-per-node 8" in args and "--rdzv-endpoint head:29401" in args
    assert "-m mlbench.collectives" in args
    # node-local files live under the host's directory so nodes never collide
    assert all(p.out.startswith("g2/") for s in plan.steps for p in s.processes)


def test_plan_round_trips_through_json_and_describes_itself():
    plan = build("standard", GPU8, "/d", "rid", select(None, None))
    again = AcceptancePlan.from_json(plan.to_json())
    assert again == plan
    text = describe(plan)
    assert "mlbench run --profile standard" in text and "python -m mlbench.mamf --device cuda:7" in text


def test_bad_profile():
    with pytest.raises(UsageError):
        build("huge", CPU, "/d", "r", ["mamf"])


@pytest.mark.slow
def test_a_sequential_step_runs_each_process_and_collects_their_codes(tmp_path):
    from mlbench.acceptance.plan import Process, Step
    from mlbench.acceptance.runner import StepState, run_step

    step = Step(
        "links",
        (
            Process("mlbench.acceptance.nodecheck", ("--io-dir", str(tmp_path), "--out", "a.jsonl"), "a.jsonl"),
            Process(
                "mlbench.acceptance.nodecheck", ("--io-dir", str(tmp_path / "missing"), "--out", "b.jsonl"), "b.jsonl"
            ),
        ),
        5,
        "test",
        concurrent=False,
    )
    plan = AcceptancePlan("quick", (step,), CPU, str(tmp_path), "r")
    outcome = run_step(step, plan, tmp_path)
    assert outcome.exit_codes == [0, 2] and outcome.status == StepState.FAILED
    assert (tmp_path / "a.jsonl").exists() and not (tmp_path / "b.jsonl").exists()
    assert outcome.logs == ["logs/links-0.log", "logs/links-1.log"]
    assert "--io-dir" in (tmp_path / "logs" / "links-1.log").read_text()
