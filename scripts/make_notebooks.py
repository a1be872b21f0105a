"""Write each lab's notebook and guide from its YAML, so neither can drift from the lab the CLI runs.

    python scripts/make_notebooks.py

For every labs/NAME.yaml it writes labs/notebooks/NAME.ipynb (no outputs) and rewrites the generated part
of the lab's section in docs/labs.md, between the GUIDE_START and GUIDE_END lines: the prediction to write,
how to run it, what to look at, the discussion questions and the extension, all taken from the YAML's
`text`. tests/test_notebooks.py fails when a YAML was edited and this script was not run.
"""
import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from testbed.labs import LABS, NANO_ANSWERS, Lab, load, names  # noqa: E402
from testbed.labs.verdict import metric_keys  # noqa: E402

NOTEBOOKS = LABS / "notebooks"
GUIDE = ROOT / "docs" / "labs.md"
GUIDE_START = "<!-- generated from labs/{name}.yaml by scripts/make_notebooks.py: edit the YAML and run the script -->"
GUIDE_END = "<!-- end of the text generated from labs/{name}.yaml -->"
# Colab ships a CUDA torch that testbed accepts: installing the README's pinned torch over it would download
# another multi-GB build. A fresh machine without torch takes the README's line.
INSTALL = ("# !pip install -e .                   # Colab: keeps its own torch\n"
           "# !pip install torch==2.13.0 && pip install -e .   # a machine without torch (the README's pin)")


def seeds_text(lab: Lab) -> str:
    return ", ".join(map(str, lab.seeds))


# The arms docs/labs.md advises for a lab whose one seed runs past a lecture.
LECTURE_ARMS = {"verified": ["verified", "unverified"]}


def lecture_arms(lab: Lab) -> str:
    arms = ", ".join(f'"{a}"' for a in LECTURE_ARMS.get(lab.name, []))
    return f" and `ARMS = [{arms}]`" if arms else ""


def example_arms(lab: Lab) -> list[str]:
    """Arms to name as an example of a short lecture's: those docs/labs.md advises, else the first two."""
    return LECTURE_ARMS.get(lab.name) or [a.name for a in lab.arms[:2]]


def plotted_metrics(lab: Lab) -> list[str]:
    """The metrics the lab's checks read, in order: the report's plot of each (metric_KEY.png), where it has one."""
    return list(dict.fromkeys(key.partition(".")[0] for check in lab.checks for key in metric_keys(check)))


def nano_text(lab: Lab, here: bool = False) -> str:
    """What the smaller model does for this lab, as measured over 3 seeds (docs/labs.md#without-native-bf16).
    here: said beside OVERRIDES, which the text then need not name."""
    if lab.name in NANO_ANSWERS:
        what = "it trains" if here else "`OVERRIDES = [\"model.preset=nano\"]` below trains"
        return f"{what} a smaller model 2.4x as fast, and answered this lab as the default size does"
    if lab.name == "verified":
        return "the smaller `nano` model does not work for this lab: its stories almost never pass the verifier"
    if "model.preset=nano" in lab.sizes.default:
        return "the lab's default size already trains the smaller `nano` model, which is how it fits a lecture"
    return "the smaller `nano` model did not answer this lab as the default size does: run it ahead of the lecture"


def stated_time(lab: Lab) -> str:
    lecture = f" For a lecture, set `SEEDS = [0]`{lecture_arms(lab)}."
    if lab.time_precision == "fp32":
        return (f"At the default size one seed took about {lab.time:g} minutes on a 2-core Intel Xeon in fp32, as the "
                "lab states it (not yet timed on a CPU with native bf16; an AMD EPYC without AVX-512 took 2.2x the "
                "Xeon's time on `collapse`)." + lecture)
    return (f"At the default size one seed takes about {lab.time:g} minutes on a 2-core CPU with native bf16, as the "
            "lab states it (without it, as the run's first line says, it trains in fp32: for `collapse` 1.3x as long "
            f"on an Intel Xeon and 2.75x on an AMD EPYC without AVX-512; {nano_text(lab)})." + lecture)


def notebook(lab: Lab) -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    discuss = "\n".join(f"{i}. {q}" for i, q in enumerate(lab.text.discuss, 1))
    cells = [
        md(f"# Lab {lab.name}: {lab.title}\n\n"
           f"**{lab.question}**\n\n"
           f"This notebook runs the lab defined in `labs/{lab.name}.yaml`, the same definition "
           f"`testbed lab run {lab.name}` runs: {len(lab.arms)} {'arm' if len(lab.arms) == 1 else 'arms'} "
           f"({', '.join(f'`{a.name}`' for a in lab.arms)}) over seeds {seeds_text(lab)}, then the comparison "
           f"report and the verdict: each expected outcome, held or not, in every seed. {stated_time(lab)} "
           f"`SIZE = \"gpu\"` is a larger setting for one GPU. The same lab as a page to read: "
           f"[docs/labs.md](../../docs/labs.md#{lab.name}).", id="question"),
        md("## Your prediction\n\n"
           f"{lab.text.predict}\n\n"
           "Write it in the empty cell below (double-click it), before you run anything.", id="predict"),
        md("", id="your-prediction"),
        md("## Setup\n\n"
           "Locally, with testbed installed from its repository, there is nothing to do. In Colab or another "
           "fresh machine, uncomment the lines below (one of the two installs), put in the address of the testbed "
           "repository, and run the cell (restart the runtime if it asks; run again, it finds the clone made "
           "before).", id="setup-text"),
        code("# !git clone REPOSITORY-ADDRESS ~/testbed\n"
             "# %cd ~/testbed\n"
             f"{INSTALL}", id="setup"),
        md("## Parameters\n\n"
           "`SIZE`: `\"default\"` is the size the lab's time and its findings were measured at; `\"reduced\"` trains "
           "tiny models for seconds and checks the pipeline, not the science (its verdicts say nothing about "
           "collapse); `\"gpu\"` is a bigger model and budget for one GPU (what it took on an H200: "
           f"[docs/labs.md](../../docs/labs.md)). `SEEDS`: `None` runs the lab's seeds ({seeds_text(lab)}); `[0]` runs "
           f"one. `ARMS`: `None` runs every arm; a list of some ({example_arms(lab)!r}) runs only those, "
           "when a lecture is short, and the expected outcomes that read another arm are not run; or give each "
           "group of students one arm, copy every group's `OUT/ARM/` folder into one `OUT`, and run the whole lab "
           "there: it trains nothing and judges every outcome. `OVERRIDES`: `key=value` laid over every arm, as "
           "`testbed lab run NAME key=value` takes them; `[\"model.preset=nano\"]` trains a model of 0.4M parameters "
           "instead of 1M, for a CPU without native bf16 ([docs/labs.md](../../docs/labs.md#without-native-bf16)); "
           f"{nano_text(lab, here=True)}; give such a run its own "
           "`OUT`. `OUT`: the lab's folder; `None` is `runs/labs/` in the repository, the one `testbed lab run` uses "
           "from the repository's root, so runs started there on the command line are reused here; a relative `OUT` "
           "is read from the repository's root too, as `--out` is there, wherever the notebook runs; point it at a lab "
           "folder run before the lecture (copied from the instructor) and this notebook trains nothing.",
           id="parameters-text"),
        code('SIZE = "default"\nSEEDS = None\nARMS = None\nOVERRIDES = []\nOUT = None', id="parameters",
             metadata={"tags": ["parameters"]}),
        md("## Run the lab\n\n"
           "Every arm and seed is an ordinary run in `OUT/ARM/seed=S/`, one after the other, each printing a line "
           "per stage. Running the cell again resumes unfinished runs and skips finished ones. Then the "
           "comparison report is written to `OUT/report/` and the verdict to `OUT/verdict.json` and "
           "`OUT/verdict.md`.", id="run-text"),
        code("from testbed.labs import LABS, default_out, load, render_text, run_lab\n\n"
             f'lab = load("{lab.name}")\n'
             "out = LABS.parent / (OUT or default_out(lab, SIZE))  # relative: from the repository's root\n"
             "verdict = run_lab(lab, size=SIZE, seeds=SEEDS, out=out, arms=ARMS, overrides=OVERRIDES)", id="run"),
        md("## The verdict\n\n"
           "Each expected outcome is checked in every seed on its own: it **held** when it held in every seed (or "
           "the share the check states), **failed** otherwise, and is **not run** when a run or a figure it needs "
           "is missing: an arm `ARMS` left out, a run that stopped (its reason is printed: mend it and run the cell "
           "above again, which resumes), or a figure this size does not compute. Below each outcome: the figure it "
           "turned on, per seed, and their mean with a 95% interval over seeds (none from one seed: one draw, which "
           "more `SEEDS` turn into an interval).", id="verdict-text"),
        code("print(render_text(verdict))", id="verdict"),
        md("## The plots\n\n"
           "From the comparison report: the headline metrics by generation, then the metrics the expected "
           "outcomes read, one line per arm (seeds drawn as a band). The whole report, with the rank-frequency "
           "curves and sample text, is `OUT/report/index.html`: open it in a browser.", id="plots-text"),
        code("from IPython.display import Image, display\n\n"
             f"METRICS = {plotted_metrics(lab)!r}  # the metrics the checks read; add any the report plots (metric_KEY.png)\n"
             'display(Image(filename=str(out / "report" / "overview.png")))\n'
             "for metric in METRICS:\n"
             '    plot = out / "report" / f"metric_{metric}.png"\n'
             "    if plot.is_file():  # a key with parts (recall_by_band) has no plot of its own\n"
             "        display(Image(filename=str(plot)))"
             + ("\nfor bands in sorted((out / \"report\").glob(\"bands_*.png\")):  # recall by frequency band, a "
                "picture per run\n    display(Image(filename=str(bands)))"
                if "recall_by_band" in plotted_metrics(lab) else ""), id="plots"),
        md(f"## What to look at\n\n{lab.text.look_at}", id="look-at"),
        md(f"## Discussion\n\n{discuss}", id="discuss"),
        md(f"## One extension to try\n\n{lab.text.extend}\n\n"
           "To run it here, uncomment the cell below and give the new arm a name and its overrides: the arm's it "
           "varies (`lab.arms` lists them) plus the extension's `key=value` (docs/configuration.md). The finished "
           "runs in `OUT` are reused, only the new arm runs, and the plots show it beside the others. To try "
           "another value, or a second arm, run the cell again with a new `NAME`: a finished arm keeps the "
           "config it ran with, and its folder refuses another.", id="extend"),
        code("# from testbed.labs import Arm\n"
             '# NAME, EXTRA = "extension-1", ["KEY=VALUE"]\n'
             "# lab.arms = [a for a in lab.arms if a.name != NAME] + [Arm(NAME, EXTRA)]\n"
             "# verdict = run_lab(lab, size=SIZE, seeds=SEEDS, out=out, arms=ARMS and [*ARMS, NAME], overrides=OVERRIDES)\n"
             "# for metric in METRICS:  # the new arm beside the others\n"
             '#     if (out / "report" / f"metric_{metric}.png").is_file():\n'
             '#         display(Image(filename=str(out / "report" / f"metric_{metric}.png")))', id="extension"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    return nb


def notebook_text(lab: Lab) -> str:
    return nbformat.writes(notebook(lab))


def guide(lab: Lab) -> str:
    """The generated part of the lab's section in docs/labs.md, markers included, wrapped as the page is."""
    def fill(text: str, indent: str = "") -> str:
        return textwrap.fill(text, 78, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)

    return "\n".join([
        GUIDE_START.format(name=lab.name),
        fill(f"**Predict first.** {lab.text.predict}"),
        "",
        fill(f"**Run it.** `testbed lab run {lab.name}` (seeds {seeds_text(lab)}; `--seeds 0` for one, "
             f"`--size reduced --seeds 0` to check the pipeline in seconds), or the notebook "
             f"[labs/notebooks/{lab.name}.ipynb](../labs/notebooks/{lab.name}.ipynb)."),
        "",
        fill(f"**What to look at.** {lab.text.look_at}"),
        "",
        "**Discuss.**",
        "",
        *(fill(f"{i}. {q}", "   ") for i, q in enumerate(lab.text.discuss, 1)),
        "",
        fill(f"**One extension to try.** {lab.text.extend}"),
        GUIDE_END.format(name=lab.name),
    ])


def guide_page(text: str, labs: list[Lab]) -> str:
    """docs/labs.md with each lab's generated part replaced, or added at the end of its ### NAME section."""
    for lab in labs:
        block = guide(lab)
        start, end = GUIDE_START.format(name=lab.name), GUIDE_END.format(name=lab.name)
        if start in text:
            text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
            continue
        head = f"\n### {lab.name}\n"
        if head not in text:
            raise SystemExit(f"{GUIDE}: no section ### {lab.name} to put its guide in; add one by hand first")
        before, after = text.split(head, 1)
        next_heading = re.search(r"^#{1,3} ", after, flags=re.M)
        body, rest = (after[:next_heading.start()], after[next_heading.start():]) if next_heading else (after, "")
        text = before + head + body.rstrip("\n") + "\n\n" + block + "\n" + ("\n" + rest if rest else "")
    return text


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()  # -h reads, and writes nothing
    labs = [load(n) for n in names()]
    NOTEBOOKS.mkdir(exist_ok=True)
    for lab in labs:
        (NOTEBOOKS / f"{lab.name}.ipynb").write_text(notebook_text(lab), encoding="utf-8")
    stale = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.stem not in names())
    for name in stale:
        (NOTEBOOKS / name).unlink()
    GUIDE.write_text(guide_page(GUIDE.read_text(encoding="utf-8"), labs), encoding="utf-8")
    print(f"wrote {len(labs)} notebooks in {NOTEBOOKS.relative_to(ROOT)}/ and their guides in "
          f"{GUIDE.relative_to(ROOT)}" + (f"; removed {', '.join(stale)} (no lab of that name)" if stale else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
