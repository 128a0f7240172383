"""The spec registry (mlbench/data/specs.csv via mlbench.specs) and `mlbench specs`."""

from __future__ import annotations

import json
import re

import pytest

from mlbench import specs

SHIPPED_PARTS = [
    "a100-sxm",
    "a100-pcie",
    "h100-sxm",
    "h100-pcie",
    "h200",
    "gh200",
    "b200",
    "b300",
    "gb200",
    "mi300x",
    "mi325x",
    "mi355x",
    "gaudi2",
    "gaudi3",
    "l40s",
]


@pytest.mark.parametrize(
    "torch_name, key",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),  # what torch reports for the SXM part
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA GH200 480GB", "gh200"),  # not the H200 row, although the name contains "H200"
        ("NVIDIA A100-SXM4-80GB", "a100-sxm"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA GB200", "gb200"),  # not the B200 row
        ("NVIDIA B300 SXM6 AC", "b300"),
        ("AMD Instinct MI300X", "mi300x"),
        ("AMD Instinct MI325X", "mi325x"),
        ("AMD Instinct MI355X", "mi355x"),
        ("GAUDI2", "gaudi2"),
        ("GAUDI3", "gaudi3"),
        ("NVIDIA L40S", "l40s"),
    ],
)
def test_lookup_matches_torch_device_names(torch_name, key):
    assert specs.lookup(torch_name).key == key


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4090", "AMD EPYC 7763", "cpu", "", None])
def test_unknown_devices_have_no_spec(name):
    assert specs.lookup(name) is None


def test_every_shipped_part_has_peaks_memory_link_power_and_sources():
    registry = {s.key: s for s in specs.load()}
    for key in SHIPPED_PARTS:
        spec = registry[key]
        assert spec.peak_tflops("bf16") > 100, key
        assert spec.number("hbm_tbps") > 0.5 and spec.number("mem_gib") >= 48 and spec.number("tdp_w") >= 300, key
        for column in ("source", "peak_source", "mem_source", "link_source", "power_source", "mamf_source"):
            assert spec.row[column], (key, column)


SOURCE_COLUMNS = ("source", "peak_source", "mem_source", "link_source", "power_source", "mamf_source")
# A public address (nvidia.com/..., github.com/owner/repo, ...) or a stated absence of a figure.
PUBLIC_DOCUMENT = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|ai|org)/\S+|^no published MAMF|^not listed")


def test_every_source_names_a_public_document():
    for spec in specs.load():
        for column in SOURCE_COLUMNS:
            text = spec.row[column]
            assert PUBLIC_DOCUMENT.search(text), (spec.key, column, text)
            assert not re.search(r"field.notes|seed deck|\bs\d(?:-\d)?\b", text, re.IGNORECASE), (
                spec.key,
                column,
                text,
            )


def test_published_mamf_cites_the_mamf_finder_table():
    for spec in specs.load():
        if spec.mamf_reference("bf16") or spec.mamf_reference("fp8"):
            assert "github.com/stas00/ml-engineering" in spec.row["mamf_source"], spec.key
            assert "Maximum Achievable Matmul FLOPS table" in spec.row["mamf_source"], spec.key


def test_published_figures_of_the_h100_and_others():
    h100 = specs.lookup("NVIDIA H100 80GB HBM3")
    assert h100.peak_tflops("bf16") == 989 and h100.peak_tflops("fp8") == 1979
    assert h100.mamf_reference("bf16") == 794.5
    assert round(100 * h100.mamf_reference("bf16") / h100.peak_tflops("bf16"), 1) == 80.3
    assert h100.mamf_expected_eff("bf16") == 0.80  # the row's "normal", set explicitly for bf16
    assert h100.mamf_expected_eff("fp8") == pytest.approx(1402.6 / 1979)  # published fp8 MAMF / fp8 peak
    assert specs.lookup("GAUDI3").mamf_expected_eff("fp8") == pytest.approx(1289.5 / 1677)
    # no published bf16 MAMF for the H200: the row's expected efficiency
    assert specs.lookup("NVIDIA H200").mamf_expected_eff("bf16") == 0.80
    assert specs.lookup("NVIDIA L40S").mamf_expected_eff("bf16") is None
    assert specs.lookup("AMD Instinct MI300X").number("hbm_tbps") == 5.3
    assert specs.lookup("NVIDIA A100-SXM4-80GB").peak_tflops("fp8") is None  # no fp8 on Ampere
    assert specs.lookup("NVIDIA A100-SXM4-80GB").peak_tflops("int8") == 624


def test_user_file_overrides_and_adds_parts(tmp_path):
    extra = tmp_path / "provider.csv"
    extra.write_text(
        "key,name,match,tflops_bf16,hbm_tbps\n"
        "h100-sxm,,,,3.0\n"  # a provider's agreed figure for a known part
        "z9,Acme Z9,ACME Z9,500,1.0\n"
    )
    registry = specs.load([extra])
    h100 = specs.lookup("NVIDIA H100 80GB HBM3", registry)
    assert h100.number("hbm_tbps") == 3.0 and h100.peak_tflops("bf16") == 989  # the rest is kept
    z9 = specs.lookup("ACME Z9 accelerator", registry)
    assert z9.key == "z9" and z9.peak_tflops("bf16") == 500


@pytest.mark.parametrize(
    "text, words",
    [
        ("key,name,match,tflops_bf16\nz9,Z9,Z9,fast\n", "needs a number"),
        ("key,name,match\nz9,Z9,([\n", "bad match pattern"),
        ("key,name,match\nz9,Z9,\n", "needs a 'match'"),
        ("key,name,match\nz9,Z9,Z9,extra\n", "more fields"),
    ],
)
def test_bad_user_files_raise_one_clear_error(tmp_path, text, words):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(specs.SpecsError, match=words):
        specs.load([bad])


def test_missing_user_file(tmp_path):
    with pytest.raises(specs.SpecsError, match="cannot read"):
        specs.load([tmp_path / "nope.csv"])


def test_specs_command_lists_and_filters(cli):
    result = cli("specs")
    assert result.exit_code == 0
    for key in SHIPPED_PARTS:
        assert key in result.output
    amd = cli("specs", "amd", "--format", "json")
    assert amd.exit_code == 0
    assert sorted(r["key"] for r in json.loads(amd.output)) == ["mi300x", "mi325x", "mi355x"]


def test_specs_command_shows_the_matching_row(cli):
    result = cli("specs", "--match", "NVIDIA H100 80GB HBM3")
    assert result.exit_code == 0
    assert "h100-sxm" in result.output and "794.5" in result.output
    unknown = cli("specs", "--match", "NVIDIA GeForce RTX 4090")
    assert unknown.exit_code == 1


def test_specs_command_csv_with_user_file(cli, tmp_path):
    extra = tmp_path / "x.csv"
    extra.write_text("key,name,match,tflops_bf16\nz9,Acme Z9,ACME,500\n")
    result = cli("specs", "z9", "--specs", str(extra), "--format", "csv", "--columns", "key,tflops_bf16")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["key,tflops_bf16", "z9,500"]


def test_specs_command_bad_input_exits_2(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("key,name,match,tflops_bf16\nz9,Z9,Z9,fast\n")
    for args in (("--specs", str(bad)), ("--columns", "nope"), ("([",)):
        result = cli("specs", *args)
        assert result.exit_code == 2, args
        assert len(result.output.strip().splitlines()) == 1
