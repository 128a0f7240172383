"""The reporter: records -> verdicts against advertised specs, tables, plots, fleet view.

The only package that imports pandas and matplotlib, and only inside functions: importing
`mlbench.report` stays light (`mlbench --help` lists the command without them).

Public API (see `api` for details):

    mlbench.report.load(paths) -> pandas.DataFrame          # tidy records, one row per record
    mlbench.report.build_report(paths, out_dir=None, specs_files=(), thresholds=None) -> ReportResult
    mlbench.report.Thresholds                                # verdict settings (verdicts.Thresholds)

Modules: `loader` (records -> frame; not `load`, which is the function), `checks` (a package: one
module per probe's checks, `rows` the check row whose fields are summary.csv's columns, `judging`
a figure against its spec), `verdicts` (the Verdict enum, rules and thresholds), `fleet` (slowest
GPU per node, suspects), `headline` (the first page's figures per node and for the fleet), `render`
(the sections, Markdown), `htmlpage` (the one-file HTML page), `plots`, `api` (build_report), `synthetic`
(a generated fleet for tests and benchmarks), `cli`.
"""

from __future__ import annotations


def load(paths, on_warning=None):
    """All records under `paths` as a tidy pandas DataFrame (see `mlbench.report.loader.load`)."""
    from .loader import load as _load

    return _load(paths, on_warning=on_warning)


def build_report(paths, out_dir=None, specs_files=(), thresholds=None, **options):
    """Judge the records under `paths` and write the report (see `mlbench.report.api.build_report`)."""
    from .api import build_report as _build

    return _build(paths, out_dir=out_dir, specs_files=specs_files, thresholds=thresholds, **options)


def __getattr__(name):
    if name == "Thresholds":
        from .verdicts import Thresholds

        return Thresholds
    raise AttributeError(name)
