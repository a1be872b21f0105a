"""The documentation keeps up with the code: every config key and every metrics key is
documented, every link resolves, and the README stays short enough to read in five minutes."""
import dataclasses
import importlib.util
import re
import typing
from pathlib import Path

import pytest
import yaml

from testbed.config import Config
from testbed.metrics import spec
from testbed.loop import run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def quiet(*args, **kwargs):
    pass


def config_keys(cls=Config, prefix: str = ""):
    """(dotted key, default) of every leaf field, walking the nested config dataclasses."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory()


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row (an escaped \\| stays inside its cell)."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in text.splitlines() if line.lstrip().startswith("|")]


def test_every_config_key_is_documented_with_its_default():
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = table_rows(text)
    missing, wrong = [], []
    for key, default in config_keys():
        if f"`{key}`" not in text:
            missing.append(key)
            continue
        # Its row: | `key` | type | `default` | meaning |
        documented = [yaml.safe_load(r[2].strip("`")) for r in rows
                      if len(r) >= 4 and r[0] == f"`{key}`" and re.fullmatch(r"`[^`]*`", r[2])]
        if default not in documented:
            wrong.append(f"{key} (code: {default!r}, docs: {documented})")
    assert not missing, f"config keys with no entry in docs/configuration.md: {missing}"
    assert not wrong, f"config keys whose documented default is not the code's: {wrong}"


def test_every_choice_key_documents_exactly_its_choices():
    # A source, family or step option added to a Literal reaches validation; its docs row must list it too.
    rows = {r[0]: r[1] for r in table_rows((DOCS / "configuration.md").read_text(encoding="utf-8")) if len(r) >= 4}
    wrong = []
    for key, hint in choice_keys():
        documented = set(re.findall(r"`([^`]*)`", rows[f"`{key}`"]))
        if documented != {str(c).lower() if isinstance(c, bool) else str(c) for c in typing.get_args(hint)}:
            wrong.append(f"{key} (code: {typing.get_args(hint)}, docs: {sorted(documented)})")
    assert not wrong, f"config keys whose documented choices are not the code's: {wrong}"


def choice_keys(cls=Config, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from choice_keys(hints[f.name], f"{prefix}{f.name}.")
        elif typing.get_origin(hints[f.name]) is typing.Literal:
            yield prefix + f.name, hints[f.name]


def metrics_keys(rows: list[dict]) -> set[str]:
    return {k for r in rows for k in r}


def assert_documented(keys: set[str]) -> None:
    undeclared = sorted(k for k in keys if spec.find(k) is None)
    assert not undeclared, f"metrics keys with no row in testbed/metrics/spec.py: {undeclared}"
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"metrics keys with no entry in docs/metrics.md: {missing}"


def test_the_metrics_table_is_written_from_the_spec():
    found = importlib.util.spec_from_file_location("metrics_doc", ROOT / "scripts" / "metrics_doc.py")
    metrics_doc = importlib.util.module_from_spec(found)
    found.loader.exec_module(metrics_doc)
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    assert metrics_doc.rewrite(text) == text, "docs/metrics.md differs from testbed/metrics/spec.py: run scripts/metrics_doc.py"


@pytest.mark.e2e
def test_every_metrics_key_of_a_curated_storyworld_run_is_documented(tmp_path, tiny_run):
    # storyworld adds the truth figures; a fresh-anchored pool lets the detector train,
    # and the watermark adds its own detection figures.
    cfg = tiny_run(tmp_path / "run", "data.source=storyworld", "data.docs=200", "data.heldout_docs=20", "generations=1",
                   "mix.regime=anchor", "mix.anchor_set=fresh", "mix.anchor_fraction=0.5",
                   "curate.detector.enabled=true", "curate.detector.train_docs=20",
                   "sample.watermark.enabled=true", "curate.watermark.enabled=true")
    keys = metrics_keys(run(cfg, say=quiet))
    for key in ("true_excess_ce", "curated_kept", "detector_roc_auc", "watermark_recall", "train_passes"):
        assert key in keys, key  # the run produced what this test means to check
    assert_documented(keys)


@pytest.mark.e2e
def test_every_metrics_key_of_a_local_run_is_documented(tmp_path, tiny_run):
    keys = metrics_keys(run(tiny_run(tmp_path / "run", "generations=1"), say=quiet))
    assert_documented(keys)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    found, seen = set(re.findall(r'<a id="([^"]+)"', text)), {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists():
            broken.append(f"{link} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link} (no heading #{anchor} in {file.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_the_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in links(README)}
    unlinked = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"
    for page in DOCS.glob("*.md"):
        assert "](../README.md" in page.read_text(encoding="utf-8"), f"{page.name} does not link back to the README"


def test_ci_runs_the_readmes_test_command_then_the_slow_suite():
    """CI tests what a new user runs: the README's second command as it stands, then the slow suite."""
    block = README.read_text(encoding="utf-8").split("## Two commands\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    install, test = block.strip().splitlines()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert test in ci, f".ci/run does not run the README's test command {test!r}"
    assert "pip install torch==2.13.0" in install and any("torch==2.13.0" in line for line in ci)
    slow = [line for line in ci[ci.index(test) + 1:] if line.startswith("pytest")]
    assert slow and "-m slow" in slow[0], ".ci/run runs no slow suite after the README's test command"
