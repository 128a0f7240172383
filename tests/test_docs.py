"""What a user sees stands alone: no project-internal vocabulary, and every relative link resolves.

Scans README.md, docs/*.md, mlbench/**/*.py (help texts, docstrings, warnings, report text) and
mlbench/data/* (the spec registry and its sources).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Words of the development process, not of the product (matched case-insensitively).
INTERNAL_VOCABULARY = {
    "field-notes": r"field-notes",
    "field notes": r"field notes",
    "seed deck": r"seed deck",
    "../shared": r"\.\./shared",
    "CONTRACT.md": r"contract\.md",
    "issue N": r"\bissue \d+",
    "the contract": r"\bthe contract",
    "the peer's / the peers'": r"\bthe peer(?:'s|s')",
}
_VOCABULARY_RE = re.compile("|".join(f"(?:{p})" for p in INTERNAL_VOCABULARY.values()), re.IGNORECASE)

# [text](target) links and <a href="target">; images ![alt](target) are links too.
_LINK_RE = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|href=\"([^\"]+)\"")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, https:, mailto:, ...


def user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "mlbench").rglob("*.py"))]
    files += sorted(p for p in (ROOT / "mlbench" / "data").iterdir() if p.is_file())
    return [p for p in files if p.is_file()]


def markdown_files() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]


def internal_vocabulary_hits(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line: text` for every line of `path` that uses internal vocabulary."""
    text = path.read_text(encoding="utf-8", errors="replace")
    rel = path.relative_to(root)
    return [
        f"{rel}:{lineno}: {line.strip()[:160]}"
        for lineno, line in enumerate(text.splitlines(), 1)
        if _VOCABULARY_RE.search(line)
    ]


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links and hrefs in `text` that point inside the repository."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks hold commands, not links
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) or m.group(2) for m in _LINK_RE.finditer(text)]
    return [t for t in targets if t and not _EXTERNAL.match(t) and not t.startswith("#")]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """`file: target` for every relative link of `path` that names no file or directory under `root`."""
    broken = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists() or root.resolve() not in (resolved, *resolved.parents):
            broken.append(f"{path.relative_to(root)}: {target}")
    return broken


# --- the checkers themselves, on texts written here ---


@pytest.mark.parametrize(
    "line",
    [
        "see FIELD-NOTES s2",
        "the field notes say",
        "from the Seed Deck",
        "(../shared/CONTRACT.md)",
        "the rules of issue 5",
        "allowed by the contract",
        "The Contract's grammar",
        "the peer's layout",
        "the peers' convention",
    ],
)
def test_vocabulary_check_catches(tmp_path, line):
    f = tmp_path / "x.md"
    f.write_text(f"fine\n{line}\n")
    assert internal_vocabulary_hits(f, tmp_path) == [f"x.md:2: {line}"]


@pytest.mark.parametrize(
    "line",
    [
        "a provider's agreed figures",
        "peer-to-peer copies",
        "mlbench measured against its peers",
        "manual_seed(seed)",
        "issues of the tool",
        "nccl-tests doc/PERFORMANCE.md",
    ],
)
def test_vocabulary_check_lets_product_words_through(tmp_path, line):
    f = tmp_path / "x.md"
    f.write_text(line + "\n")
    assert internal_vocabulary_hits(f, tmp_path) == []


def test_link_check_resolves_files_and_ignores_urls_anchors_and_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[a](docs/a.md) [a sec](docs/a.md#a) [web](https://example.com/x.md) [top](#a)\n"
        "`[not](a link)`\n```\n[nor](this.md)\n```\n"
        "[gone](docs/gone.md) [out](../outside.md) ![img](docs/pic.png)\n"
    )
    assert broken_links(readme, tmp_path) == [
        "README.md: docs/gone.md",
        "README.md: ../outside.md",
        "README.md: docs/pic.png",
    ]


# --- the repository ---


def test_no_internal_vocabulary_in_what_users_see():
    hits = [hit for path in user_facing_files() for hit in internal_vocabulary_hits(path)]
    assert not hits, "internal vocabulary in user-facing files:\n" + "\n".join(hits)


def test_every_relative_link_in_the_docs_resolves():
    assert (ROOT / "docs" / "reference.md").is_file()
    broken = [b for path in markdown_files() for b in broken_links(path)]
    assert not broken, "relative links that name no file of the repository:\n" + "\n".join(broken)


def test_readme_and_harness_link_the_reference():
    for doc in (ROOT / "README.md", ROOT / "docs" / "harness.md"):
        targets = [t.split("#")[0] for t in relative_links(doc.read_text(encoding="utf-8"))]
        assert any(Path(t).name == "reference.md" for t in targets), doc
