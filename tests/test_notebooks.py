"""The lab notebooks (labs/notebooks/) and the lab guides in docs/labs.md are what scripts/make_notebooks.py
writes from the lab files; in the slow suite every notebook runs end to end at the reduced size."""
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from test_docs import anchors
from testbed.labs import load, names
from testbed.labs.verdict import describe, metric_keys

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "labs" / "notebooks"
GUIDE = ROOT / "docs" / "labs.md"
REGENERATE = "run `python scripts/make_notebooks.py` after editing a lab's YAML (never edit the notebook or guide)"


def make_notebooks():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(nb, cell_id: str):
    [found] = [c for c in nb.cells if c.id == cell_id]
    return found


def test_there_is_one_notebook_per_lab():
    assert names(), "no labs found"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == names(), f"notebooks and labs differ: {REGENERATE}"


@pytest.mark.parametrize("name", names())
def test_the_notebook_parses_and_is_what_the_script_writes_from_the_lab(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    lab = load(name)
    assert path.read_text(encoding="utf-8") == make_notebooks().notebook_text(lab), \
        f"{path.relative_to(ROOT)} is not what labs/{name}.yaml gives: {REGENERATE}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "a notebook is committed without outputs"
    # The student's text is the lab file's, in the order a lesson reads it.
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    order = [lab.question, lab.text.predict, lab.text.look_at, *lab.text.discuss, lab.text.extend]
    positions = [next(i for i, text in enumerate(markdown) if part in text) for part in order]
    assert positions == sorted(positions), positions
    ids = [c.id for c in nb.cells]
    assert ids.index("your-prediction") == ids.index("predict") + 1 and cell(nb, "your-prediction").source == "", \
        "an empty cell for the prediction, right below the prompt"
    parameters = cell(nb, "parameters")
    assert parameters.metadata.tags == ["parameters"]
    assert parameters.source.splitlines() == ['SIZE = "default"', "SEEDS = None", "ARMS = None", "OVERRIDES = []",
                                              "OUT = None"]
    assert f'load("{name}")' in cell(nb, "run").source
    for link in re.findall(r"\]\(([^)\s]+)\)", " ".join(markdown)):
        target, _, anchor = link.partition("#")
        assert (path.parent / target).is_file() and (not anchor or anchor in anchors(path.parent / target)), link
    assert "pip install" in cell(nb, "setup").source
    assert all(line.startswith("#") for line in cell(nb, "setup").source.splitlines()), "setup does nothing locally"


def test_the_run_cell_passes_every_parameter_to_the_lab(monkeypatch):
    """OVERRIDES is how a class on a CPU without native bf16 runs the smaller model: it must reach the runs."""
    import testbed.labs

    nb = nbformat.read(NOTEBOOKS / "collapse.ipynb", as_version=4)
    calls = []
    monkeypatch.setattr(testbed.labs, "run_lab", lambda lab, **kw: calls.append((lab.name, kw)) or {})
    scope = {"SIZE": "reduced", "SEEDS": [1], "ARMS": ["replace"], "OVERRIDES": ["model.preset=nano"], "OUT": "x"}
    exec(cell(nb, "run").source, scope)
    [(name, kw)] = calls
    # A relative OUT is the repository's, as `--out` from its root: Jupyter's working folder is the notebook's.
    assert name == "collapse" and kw == {"size": "reduced", "seeds": [1], "out": testbed.labs.LABS.parent / "x",
                                         "arms": ["replace"], "overrides": ["model.preset=nano"]}
    scope["OUT"] = "/abs/lab"
    exec(cell(nb, "run").source, scope)
    assert calls[-1][1]["out"] == Path("/abs/lab")


@pytest.mark.parametrize("arms, expected", [(None, None), (["pure"], ["pure", "extension-1"])])
def test_the_extension_cell_runs_the_arms_the_parameters_chose_and_the_new_one(arms, expected, monkeypatch):
    """Uncommented, the extension must not start the arms ARMS left out (in a lecture, minutes each), and a second
    value goes in an arm of its own: an arm's finished folder refuses another config, so one fixed name failed the
    cell's second run."""
    import testbed.labs

    nb = nbformat.read(NOTEBOOKS / "sampling.ipynb", as_version=4)
    source = "\n".join(line.removeprefix("# ") for line in cell(nb, "extension").source.splitlines())
    calls, shown = [], []
    monkeypatch.setattr(testbed.labs, "run_lab", lambda lab, **kw: calls.append(kw) or {})
    scope = {"lab": load("sampling"), "SIZE": "reduced", "SEEDS": [0], "ARMS": arms, "OVERRIDES": ["model.preset=nano"],
             "out": Path("unused"), "run_lab": testbed.labs.run_lab, "METRICS": [], "display": shown.append,
             "Image": lambda filename: filename}
    exec(source, scope)
    [kw] = calls
    assert kw["arms"] == expected and [a.name for a in scope["lab"].arms][-1] == "extension-1"
    assert kw["overrides"] == ["model.preset=nano"]
    arms = len(scope["lab"].arms)
    exec(source.replace("KEY=VALUE", "sample.top_k=5"), scope)  # run again, edited in place: the same arm, replaced
    assert len(scope["lab"].arms) == arms and scope["lab"].arms[-1].overrides[-1] == "sample.top_k=5"
    exec(source.replace('"extension-1"', '"extension-2"').replace("KEY=VALUE", "sample.top_k=2"), scope)
    assert [a.name for a in scope["lab"].arms][-2:] == ["extension-1", "extension-2"]  # both drawn in the report


@pytest.mark.parametrize("name", names())
def test_the_smaller_model_is_offered_only_for_the_labs_it_answered(name):
    """A class on fp32 laptops that followed verified.ipynb's advice to use nano got a slower run and no answer."""
    from testbed.labs import NANO_ANSWERS
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    offered = "answered this lab as the default size does" in text
    assert offered == (name in NANO_ANSWERS)
    assert ("does not work for this lab" in text) == (name == "verified")
    # accumulate's default is nano already: telling its class to run it ahead for being nano was wrong
    assert ("already trains the smaller `nano` model" in text) == ("model.preset=nano" in load(name).sizes.default)
    assert "did not answer this lab" not in text or "model.preset=nano" not in load(name).sizes.default


def test_a_lab_whose_checks_read_recall_by_band_shows_its_band_pictures():
    """collapse asks what goes first; its answer, recall by frequency band, has a picture per run and no metric plot."""
    for name in names():
        plots = cell(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4), "plots").source
        reads = any("recall_by_band" in key for c in load(name).checks for key in metric_keys(c))
        assert ("bands_*.png" in plots) == reads, name
    assert "bands_*.png" in cell(nbformat.read(NOTEBOOKS / "collapse.ipynb", as_version=4), "plots").source


def test_an_edited_lab_gives_another_notebook_and_guide():
    script, lab = make_notebooks(), load("collapse")
    before = (script.notebook_text(lab), script.guide(lab))
    lab.text.extend = "Try a temperature of 1.3."
    after = (script.notebook_text(lab), script.guide(lab))
    assert all("Try a temperature of 1.3." in text for text in after) and before[0] != after[0] and before[1] != after[1]


def test_the_guide_holds_each_labs_text_as_the_script_writes_it():
    text = GUIDE.read_text(encoding="utf-8")
    script, labs = make_notebooks(), [load(n) for n in names()]
    assert script.guide_page(text, labs) == text, f"docs/labs.md's lab guides are not what the lab files give: {REGENERATE}"
    flat = " ".join(text.split())  # the guide is wrapped at 78 columns
    notebooks = text.split("## Notebooks\n", 1)[1].split("\n## ", 1)[0]
    for lab in labs:
        body = " ".join(text.split(f"\n### {lab.name}\n", 1)[1].split("\n### ", 1)[0].split())
        for part in [lab.question, lab.text.predict, lab.text.look_at, *lab.text.discuss, lab.text.extend,
                     f"`testbed lab run {lab.name}`", f"](../labs/notebooks/{lab.name}.ipynb)"]:
            assert " ".join(part.split()) in body, (lab.name, part)
        assert f"](../labs/notebooks/{lab.name}.ipynb)" in notebooks, f"## Notebooks does not link {lab.name}'s notebook"
    assert "Colab" in flat and "jupyter lab" in flat


# --- every notebook end to end -------------------------------------------------------------------------------

# The reduced size for one seed: the whole set runs in a few minutes on 2 cores. Every check a lab expects at the
# reduced size must hold there (its `reduced: false` checks need the default size's model), so a change that
# turns one of those outcomes round fails here.
REDUCED_SEEDS = [0]


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_the_notebook_runs_end_to_end_at_the_reduced_size(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    out = tmp_path / "lab"
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    # As papermill does: a cell after the one tagged `parameters` sets this run's values.
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f'SIZE = "reduced"\nSEEDS = {REDUCED_SEEDS!r}\nOUT = {str(out)!r}'))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel is a process of its own
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # it imports this checkout's testbed, installed or not
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    lab = load(name)
    verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["size"] == "reduced" and verdict["seeds"] == REDUCED_SEEDS and not verdict["missing"]
    assert [c["check"] for c in verdict["checks"]] == [describe(c) for c in lab.checks]
    for check, expected in zip(verdict["checks"], lab.checks):
        assert check["status"] in ("held", "failed") and len(check["per_seed"]) == len(REDUCED_SEEDS), check
        assert check["status"] == "held" or not expected.reduced, \
            f"{name} at the reduced size: {check['check']} failed: {check['per_seed']}"
    assert any(c.reduced for c in lab.checks), f"{name} expects none of its outcomes at the reduced size: nothing guards it"
    printed = "".join(o.get("text", "") for o in cell(nb, "verdict").outputs)
    assert f"verdict: {verdict['summary']}" in printed
    images = [o for o in cell(nb, "plots").outputs if "image/png" in o.get("data", {})]
    assert images, "the report's plots are shown inline"
    assert "lab " + name in "".join(o.get("text", "") for o in cell(nb, "run").outputs), "the run prints its progress"
