"""The report's fabric section: named nodes and links, NIC spec judging, NIC mismatches, heatmap, --specs."""

from __future__ import annotations

import pytest

pytest.importorskip("pandas")

from mlbench import specs  # noqa: E402
from mlbench.fabric.plan import Rounds, random_pairing  # noqa: E402
from mlbench.fabric.synthetic import FabricFleet, write  # noqa: E402
from mlbench.report.api import build_report  # noqa: E402


def report(tmp_path, fleet: FabricFleet, specs_files=(), plots=False):
    run = tmp_path / "run"
    write(fleet, run)
    return build_report([run], out_dir=tmp_path / "out", specs_files=specs_files, plots=plots)


def rows(result, check: str) -> dict:
    part = result.verdicts[result.verdicts["check"] == check]
    return {r.host: r for r in part.itertuples(index=False)}


def test_a_slow_node_fails_its_fabric_node_check_and_the_report(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=8, slow_nodes=("node0005",)), plots=True)
    nodes = rows(result, "fabric.node")
    assert sorted(nodes) == [f"node{i:04d}" for i in range(8)]
    assert nodes["node0005"].verdict == "FAIL" and "fails again with a node that passed" in nodes["node0005"].reason
    assert all(r.verdict == "PASS" for host, r in nodes.items() if host != "node0005")
    assert rows(result, "fabric.link") == {} and result.exit_code == 1
    assert "## Fabric" in result.markdown and "Named: node node0005." in result.markdown
    assert (tmp_path / "out" / "plots" / "fabric.png").stat().st_size > 1000
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "fabric.node" in summary


def test_a_healthy_fabric_passes_and_is_judged_against_its_nics(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=6, pair_gbps=360.0, inter_gbps=350.0))
    assert {r.verdict for r in rows(result, "fabric.node").values()} == {"PASS"} and result.exit_code == 0
    (inter,) = rows(result, "fabric.inter.all_reduce").values()
    # 8 x 400 Gb/s InfiniBand (quantum-2): 400 GB/s per node; 350 +- 5% is ~87%, normal ~80%
    assert inter.spec == "quantum-2" and inter.spec_value == 400.0 and inter.verdict == "PASS"
    assert inter.pct_of_spec == pytest.approx(100 * inter.value / 400.0)
    assert {r.verdict for r in rows(result, "fabric.nics").values()} == {"PASS"}


def test_inter_busbw_far_below_the_nic_spec_fails(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=4, inter_gbps=150.0))
    (inter,) = rows(result, "fabric.inter.all_reduce").values()
    assert inter.verdict == "FAIL" and "far below the normal ~80%" in inter.reason


def test_over_gloo_no_nic_figure_applies(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=4, backend="gloo", inter_gbps=1.0, pair_gbps=1.0))
    (inter,) = rows(result, "fabric.inter.all_reduce").values()
    assert inter.verdict == "INFO" and "gloo" in inter.reason and result.exit_code == 0


def test_a_node_with_a_port_down_is_flagged(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=4, down=("node0002",)))
    nics = rows(result, "fabric.nics")
    assert (
        nics["node0002"].verdict == "FAIL" and "1 of 8 fabric port(s) not active: mlx5_7:1" in nics["node0002"].reason
    )
    assert {nics[h].verdict for h in nics if h != "node0002"} == {"PASS"}


def test_a_slow_link_is_named_and_neither_node(tmp_path):
    names = [f"node{i:04d}" for i in range(6)]
    link = random_pairing(names, 3).pairs[1]
    result = report(tmp_path, FabricFleet(nodes=6, seed=3, slow_links=(link,)))
    links = rows(result, "fabric.link")
    assert list(links) == ["+".join(link)] and links["+".join(link)].verdict == "FAIL"
    assert "again" in links["+".join(link)].reason
    assert {r.verdict for r in rows(result, "fabric.node").values()} == {"PASS"}


def test_full_rounds_name_the_slow_node(tmp_path):
    result = report(tmp_path, FabricFleet(nodes=5, rounds=Rounds.FULL, slow_nodes=("node0001",)))
    assert [h for h, r in rows(result, "fabric.node").items() if r.verdict == "FAIL"] == ["node0001"]


def test_specs_override_a_fabric_row_and_add_one(tmp_path):
    extra = tmp_path / "fabric.csv"
    extra.write_text("key,node_gbps\nquantum-2,800\n")
    result = report(tmp_path, FabricFleet(nodes=4, inter_gbps=350.0), specs_files=[extra])
    (inter,) = rows(result, "fabric.inter.all_reduce").values()
    assert inter.spec_value == 800.0 and inter.verdict == "FAIL"  # 350 of 800 is far below ~80%
    registry = specs.load([extra])
    assert "quantum-2" not in [s.key for s in registry]  # accelerator rows only
    assert next(s for s in registry.fabric if s.key == "quantum-2").number("node_gbps") == 800.0
    mine = tmp_path / "mine.csv"
    mine.write_text("key,name,match,port_gbits,node_gbps\nlab,Lab fabric,^infiniband 2x,200,50\n")
    assert specs.lookup_fabric("infiniband 2x200G mlx5_core", specs.load_fabric([mine])).key == "lab"
    bad = tmp_path / "bad.csv"
    bad.write_text("key,node_gbps\nnew-one,100\n")
    with pytest.raises(specs.SpecsError):
        specs.load_fabric([bad])


def test_every_fabric_row_names_its_source():
    import re

    public = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|ai|org)/\S+")
    rows_ = specs.load_fabric()
    keys = {s.key for s in rows_}
    assert {
        "ib-xdr",
        "quantum-2",
        "ib-ndr",
        "efa-v2",
        "efa-v3",
        "efa-v4",
        "gaudi3-roce",
        "roce-400",
        "roce-200",
        "roce-100",
    } <= keys
    for spec in rows_:
        assert public.search(spec.row["source"]) and public.search(spec.row["eff_source"]), spec.key
        assert spec.number("port_gbits") or spec.key == "efa"
    assert specs.lookup_fabric("efa 16x400G efa").number("node_gbps") == 800
    assert specs.lookup_fabric("infiniband 8x800G mlx5_core").number("node_gbps") == 800
    assert specs.lookup_fabric("efa 32x100G efa").number("node_gbps") == 400


def test_a_slow_rail_and_a_slow_node_inside_fail(tmp_path):
    """Rails against the NIC share per rank (400 GB/s / 8 ranks = 50), nodes inside against NVLink (450)."""
    import json

    from mlbench.fabric.synthetic import DEVICE, nic_records
    from mlbench.records import make_record

    fleet = FabricFleet(nodes=4)
    names = fleet.node_names()
    records = nic_records(fleet)
    base = {
        "op": "all_reduce",
        "bytes": 1 << 30,
        "dtype": "fp32",
        "backend": "nccl",
        "ranks_per_node": 8,
        "intra_node_path": "shortcuts",
        "threshold": 0.7,
        "in_place": True,
    }
    for rail in range(8):
        gbps = 10.0 if rail == 3 else 41.0
        params = {**base, "view": "rail", "rail": rail, "nodes": names, "group_size": 4}
        records.append(
            make_record(
                "fabric",
                fleet.run_id,
                DEVICE,
                params,
                {"busbw_gbps": gbps, "algbw_gbps": gbps / 1.5, "time_us": 1.0, "errors": 0, "slowest_host": names[2]},
            )
        )
    for node in names:
        gbps = 200.0 if node == names[1] else 380.0
        params = {**base, "view": "intra", "node": node, "nodes": [node], "group_size": 8}
        records.append(
            make_record(
                "fabric",
                fleet.run_id,
                DEVICE,
                params,
                {"busbw_gbps": gbps, "algbw_gbps": gbps / 1.75, "time_us": 1.0, "errors": 0, "slowest_host": node},
            )
        )
    run = tmp_path / "run"
    run.mkdir()
    (run / "fabric.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = build_report([run], out_dir=tmp_path / "out", plots=False)
    rails = {r.device: r for r in result.verdicts[result.verdicts["check"] == "fabric.rail.all_reduce"].itertuples()}
    assert rails["rail3"].verdict == "FAIL" and "rail 3" in rails["rail3"].reason
    assert rails["rail0"].spec_value == 50.0 and rails["rail0"].verdict == "PASS"  # 41 of 50 is 82%, normal ~80%
    intra = rows(result, "fabric.intra.all_reduce")
    assert intra[names[1]].verdict == "FAIL" and intra[names[0]].verdict == "PASS"
    assert intra[names[0]].spec_value == 450.0  # the H100's NVLink per direction


def test_the_headline_shows_the_fabric_inter_view_as_inter_node_busbw(tmp_path):
    from mlbench.report.headline import headline

    result = report(tmp_path, FabricFleet(nodes=6, pair_gbps=360.0, inter_gbps=350.0))
    (line,) = [x for x in headline(result.verdicts).summary if x.label.startswith("inter-node busbw")]
    assert "fabric inter, all_reduce" in line.label
    values = [r.value for r in rows(result, "fabric.inter.all_reduce").values()]
    assert line.value == pytest.approx(sorted(values)[len(values) // 2], rel=0.2) and line.unit == "GB/s"
