"""`testbed compare RUN... --out DIR`: one HTML page of plots, tables and sample text, with CSV and JSON of the numbers.

The word-level pictures (Zipf curves, recall by band) are drawn from the
same seeded fixed-size word samples the metrics use, so every generation
and every run is pictured at the same size, and the human training split,
cut to that size too, is the reference. The report is built in a folder
beside DIR and renamed into place: a reader never sees half a report.
"""
import csv
import html
import io
import json
import math
import random
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from testbed import TestbedError, __version__
from testbed.config import NOT_THE_EXPERIMENT, load_saved, yaml_value
from testbed.corpus.human import saved_training_split
from testbed.metrics import spec
from testbed.metrics.diversity import fixed_size_sample
from testbed.metrics.tail import Human
from testbed.report import plots
from testbed.report.compare import differing_keys, value
from testbed.rundir import RunDir, read_json, read_jsonl
from testbed.seeds import eval_seed
from testbed.text import WORD, normal, words


def build(runs: list[dict], out: str | Path, metrics: list[str] | None = None, samples: int = 4,
          option: str | None = "--out", lab: dict | None = None) -> Path:
    """Write the report to `out`, replacing an earlier report there, and nothing else: a folder that
    holds a file the earlier report's manifest does not list is the user's, and is refused.
    option: what the user named `out` with, for the messages (None: a sweep's own RUN_DIR/report).
    lab: the verdict of the lab whose report this is (title, question, summary), shown at the top."""
    given, out = Path(out), Path(out).absolute()  # "." has no name to set a report aside by, nor a parent to build beside
    if out.exists():
        check_replaceable(out, option)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _write(runs, tmp, metrics, samples, lab)
        tmp.chmod(0o755)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return given / "index.html"  # as the user named it


STALE_HOURS = 1  # a build takes seconds to minutes; one untouched this long was left by a killed process


def _remove_stale(out: Path) -> None:
    """The half-built folders (.NAME.*.tmp) and set-aside reports (.NAME.*.old) a kill -9 left beside `out`. Another
    process may be building the same report now (a lab's seeds side by side), so only the long-untouched go."""
    now = time.time()
    for pattern in (f".{out.name}.*.tmp", f".{out.name}.*.old"):
        for left in out.parent.glob(pattern):
            try:
                if now - left.stat().st_mtime > STALE_HOURS * 3600:
                    shutil.rmtree(left, ignore_errors=True)
            except FileNotFoundError:  # its builder finished and moved it meanwhile
                pass


def remove(out: str | Path) -> None:
    """Take away a report this testbed wrote at `out` (a folder of the user's is refused, as build refuses it)."""
    out = Path(out).absolute()
    if out.exists():
        check_replaceable(out, option=None)
        shutil.rmtree(out)


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename tmp to out, first setting aside the report there. Another process may be replacing the same
    report at this moment (a lab's seeds run as processes side by side into one --out): the last to rename
    wins, and none fails or leaves a folder behind."""
    for attempt in range(100):
        try:
            tmp.rename(out)
            return
        except OSError:
            if attempt == 99:
                raise
        aside = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
        try:
            out.rename(aside)
        except FileNotFoundError:
            continue  # another process set it aside first
        shutil.rmtree(aside, ignore_errors=True)


def check_replaceable(out: Path, option: str | None = "--out") -> None:
    where = f"{option} {out}" if option else str(out)  # else a folder the command names itself: RUN_DIR/report
    not_a_report = TestbedError(f"{where}: exists and is not a report this testbed wrote (no report.json listing its "
                                f"files); {'choose a new folder' if option else 'move it away: the report goes there'}")
    fix = "choose a new folder, or move them out first" if option else "move them out: the report goes there"
    for _ in range(100):
        try:
            listed = set(json.loads((out / "report.json").read_text(encoding="utf-8"))["files"])
            foreign = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                             if not p.is_dir() and str(p.relative_to(out)) not in listed | {"report.json"})
            subfolder = any(p.is_dir() for p in out.iterdir())
            break
        except FileNotFoundError:
            if not out.exists() or (out.is_dir() and not any(out.iterdir())):  # a folder made for it: nothing to lose
                return
            # Another process may have replaced the report while this one read it (_move_into_place): read again.
        except (OSError, ValueError, KeyError, TypeError):
            raise not_a_report from None
    else:
        raise not_a_report
    if foreign or subfolder:
        found = ", ".join(foreign[:3]) or "a subfolder"
        raise TestbedError(f"{where}: holds files the report did not write ({found}); {fix}")


def _write(runs, folder: Path, metrics, samples, lab=None) -> None:
    available = {k for r in runs for row in r["rows"] for k in spec.numbers(row, ".")}
    for m in metrics or []:
        if m not in available:
            raise TestbedError(f"--metrics: no run has {m!r}; available: {', '.join(sorted(available))}")
    # The overview is how collapse shows; curation's figures, which collapse does not move, get plots of their own.
    headline = [m for m in spec.headline() if m in available and spec.direction(m)]
    metrics = metrics or [*headline, *(m for m in spec.plotted() if m in available and m not in headline)]
    groups = seed_groups(runs)
    figures = []
    if headline:
        plots.overview_figure(folder / "overview.png", headline, groups, {m: spec.direction(m) for m in headline})
    for m in metrics:
        plots.metric_figure(folder / f"metric_{m}.png", m, groups, spec.direction(m))
        figures.append((m, f"metric_{m}.png"))
    words_section = [word_pictures(run, i, folder) for i, run in enumerate(runs)]
    text_section = [sample_text(run, samples) for run in runs]
    rows = flat_rows(runs, groups)
    _write_csv(folder / "metrics.csv", rows)
    data = page_data(runs, headline, figures, metrics, words_section, text_section)
    if lab:  # a student opening the page alone sees which question it answers, and the answer
        data["lab"] = {k: lab[k] for k in ("title", "question", "summary")}
    # utf-8, as the page declares: sample text is not ASCII everywhere
    (folder / "index.html").write_text(render(data), encoding="utf-8")
    # The manifest: what a later report in this folder may replace.
    files = sorted(p.name for p in folder.iterdir())
    (folder / "report.json").write_text(json.dumps({
        "created": _now(), "testbed": __version__, "files": files, "differing_keys": differing_keys(runs),
        "runs": [{"name": r["name"], "path": str(r["path"]), "planned": r["planned"], "finished": r["finished"],
                  "missing": r["missing"], "unfinished": r["unfinished"], "environment": r["environment"],
                  "rows": r["rows"]} for r in runs]}, indent=1, default=str) + "\n")


# --- the data ----------------------------------------------------------------------------------------------


def seed_groups(runs: list[dict]) -> list[dict]:
    """Runs whose configs differ only in seed (and run_dir) form one group, drawn as a mean and a band over the
    generations every member has. A run of a seed the group already holds (a rerun elsewhere) starts a group of
    its own: it is not another seed."""
    groups = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run["config"].items() if k != "seed" and k not in NOT_THE_EXPERIMENT},
                         sort_keys=True)
        same = groups.setdefault(key, [])
        home = next((g for g in same if all(m["config"]["seed"] != run["config"]["seed"] for m in g)), None)
        if home is None:
            same.append(home := [])
        home.append(run)
    out = []
    for members in (g for same in groups.values() for g in same):
        label = members[0]["name"]
        if len(members) > 1:
            stripped = re.sub(r"[_\-,.]?seed[=_\-]?\d+", "", label).strip("/")
            # A seeds-only sweep names its runs seed=N: the sweep's folder is then the name.
            stripped = stripped or Path(members[0]["path"]).parent.name or label
            label = f"{stripped} ({len(members)} seeds: {', '.join(str(m['config']['seed']) for m in members)})"
            if len({tuple(sorted(r["generation"] for r in m.get("rows", []))) for m in members}) > 1:
                label += " (generations all seeds have)"
        if any(m["partial"] for m in members):
            label += " (partial)"
        out.append({"label": label, "runs": members})
    return out


def human_texts(run: dict) -> list[str]:
    """The run's human training split, rebuilt from its config and checked against split.json."""
    return saved_training_split(load_saved(run["path"] / "config.yaml"), read_json(run["path"] / "split.json"))


def _human(run: dict) -> dict:
    """Word counts and rare band of the human training split, or why they are unavailable."""
    if "human" not in run:
        try:
            texts = human_texts(run)
        except TestbedError as e:
            run["human"] = {"error": str(e)}
            return run["human"]
        ev = run["config"]["eval"]
        tail = Human([words(t) for t in texts], ev["rare_max_freq"], ev["rare_quantile"], ev["common_mass"])
        run["human"] = {"texts": texts, "counts": tail.counts, "rare": tail.rare}
    return run["human"]


def log2_bands(counts: Counter) -> tuple[list[str], dict]:
    """Frequency bands by powers of two of the human count (1, 2-3, 4-7, ...): labels and type -> band index."""
    band_of = {w: int(math.log2(c)) for w, c in counts.items() if c > 0}
    top = max(band_of.values(), default=0)
    labels = [str(2 ** b) if b == 0 else f"{2 ** b}-{2 ** (b + 1) - 1}" for b in range(top + 1)]
    return labels, band_of


def word_pictures(run: dict, index: int, folder: Path) -> dict:
    """Zipf curves and recall by band for one run, from fixed-size word samples of each generation's corpus."""
    human = _human(run)
    size = run["config"]["eval"]["sample_words"]
    seed = eval_seed(run["config"]["seed"])
    gens = run["finished"]
    # As the metrics count them: under sample.prompt=human, what the model wrote after the prompt.
    corpora = {g: read_jsonl(RunDir(run["path"]).gen(g) / "corpus.jsonl") for g in gens}
    samples = {g: fixed_size_sample([r.get("written", r["text"]) for r in rows], size, seed)
               for g, rows in corpora.items()}
    counts = {g: Counter(w for d in s for w in d) for g, s in samples.items()}
    result = {"run": run["name"], "zipf": f"zipf_{index}.png", "bands": None, "note": None}
    reference = None
    if "error" in human:
        result["note"] = f"human reference unavailable: {human['error']}"
    else:
        reference_counts = Counter(w for d in fixed_size_sample(human["texts"], size, seed) for w in d)
        reference = sorted(reference_counts.values(), reverse=True)
        labels, band_of = log2_bands(human["counts"])
        sizes = Counter(band_of.values())
        kept = [k for k in range(len(labels)) if sizes[k]]  # a band with no types has no recall
        columns = {"human": reference_counts, **{str(g): c for g, c in counts.items()}}
        recall = [[sum(1 for w, b in band_of.items() if b == k and w in present) / sizes[k] for k in kept]
                  for present in columns.values()]
        plots.band_heatmap(folder / f"bands_{index}.png", f"{run['name']}: share of each band's word types present",
                           [f"{labels[k]} ({sizes[k]:,} types)" for k in kept], list(columns), recall)
        result["bands"] = f"bands_{index}.png"
    plots.zipf_figure(folder / result["zipf"], f"{run['name']}: rank-frequency of {size:,}-word samples",
                      {f"gen {g}": sorted(c.values(), reverse=True) for g, c in counts.items()}, reference)
    return result


def sample_text(run: dict, k: int) -> dict:
    """The same k seeded document positions from generation 0's corpus and the last finished one's."""
    gens = run["finished"]
    if not gens or k <= 0:
        return {"run": run["name"], "columns": []}
    human = _human(run)
    rare = human.get("rare", set())
    columns = []
    for g in sorted({gens[0], gens[-1]}):
        texts = [r["text"] for r in read_jsonl(RunDir(run["path"]).gen(g) / "corpus.jsonl")]
        picks = sorted(random.Random(0).sample(range(len(texts)), min(k, len(texts))))
        columns.append({"generation": g, "docs": [highlight(texts[i], rare) for i in picks]})
    return {"run": run["name"], "columns": columns}


def highlight(text: str, rare: set) -> str:
    """HTML of the text with the human rare-band words marked."""
    out, end = [], 0
    for m in WORD.finditer(text):
        out.append(html.escape(text[end:m.start()]))
        word = html.escape(m.group())
        out.append(f"<mark>{word}</mark>" if normal(m.group()) in rare else word)
        end = m.end()
    out.append(html.escape(text[end:]))
    return "".join(out)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flat_rows(runs: list[dict], groups: list[dict]) -> list[dict]:
    """Every run's rows with nested figures flattened (recall_by_band.rare); lists such as curation left out. Each
    row names its seed and its group (the plots' legend label), so a table groups over seeds without parsing names."""
    group = {id(run): g["label"] for g in groups for run in g["runs"]}
    return [{"run": run["name"], "group": group[id(run)], "seed": run["config"]["seed"], "partial": run["partial"],
             **spec.numbers(row, ".")} for run in runs for row in run["rows"]]


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the page ---------------------------------------------------------------------------------------------


def page_data(runs, headline, figures, metrics, words_section, text_section) -> dict:
    """What index.html shows, every number already formatted: templates/report.html.j2 only lays it out."""
    def row(run):
        when, device, versions = _environment(run)
        rows = [spec.numbers(row, ".") for row in run["rows"]]
        problems = []
        if missing := [g for g in run["missing"] if g not in run["unfinished"]]:  # those begun are named below
            problems.append("missing: " + ", ".join(map(str, missing)))
        if run["unfinished"]:
            problems.append("unfinished (killed or still running): "
                            + ", ".join(f"{RunDir(run['path']).gen(g).name}.partial" for g in run["unfinished"]))
        return {"name": run["name"], "path": str(run["path"]), "when": when, "device": device, "versions": versions,
                "status": f"{len(run['finished'])} of {run['planned'] + 1} generations finished", "problems": problems,
                "last": rows[-1]["generation"] if rows else "-", "planned": run["planned"],
                "cells": [_cell(rows[0].get(m) if rows else None, rows[-1].get(m) if rows else None, _marked(m),
                                rows[0]["generation"] if rows else 0) for m in metrics]}

    return {"created": _now()[:16].replace("T", " "), "version": __version__, "runs": [row(r) for r in runs],
            "differing": [{"key": k, "values": [yaml_value(value(r["config"], k)) for r in runs]} for k in differing_keys(runs)],
            "metrics": metrics, "overview": bool(headline), "headline": [(m, f) for m, f in figures if m in headline],
            "figures": [(m, f) for m, f in figures if m not in headline], "words": words_section, "texts": text_section}


def _environment(run: dict) -> tuple[str, str, str]:
    envs = run["environment"]
    if not envs:
        return "not recorded", "not recorded", "not recorded"
    dates = sorted(e["finished"] for e in envs)
    when = dates[0][:16].replace("T", " ") + (f" to {dates[-1][:16].replace('T', ' ')}" if dates[-1] != dates[0] else "")
    devices = ", ".join(sorted({f"{e['device']} ({'fp32' if e['mixed_precision'] == 'no' else e['mixed_precision']}, {e['processes']} process"
                                f"{'es' if e['processes'] > 1 else ''})" for e in envs}))
    versions = "; ".join(sorted({", ".join(f"{k} {v}" for k, v in e["versions"].items()) for e in envs}))
    return when + " UTC", devices, versions


def _marked(metric: str) -> int:
    """The way a cell turns red: only for a metric the table marks as moving with collapse (`signal`), or a part of
    a table (recall_by_band.rare) that moves as its table does. distinct_2 rises and self_ppl falls under collapse
    as well, so red there had pointed at the arm that held."""
    m = spec.find(metric)
    return spec.direction(metric) if m is None or m.signal else 0


def _cell(first, last, direction, since: int = 0) -> dict | None:
    """The final table's cell: the last value, its change from the first finished generation (since: 0, unless
    generation 0 is missing) and that generation's value, and whether the change is the way collapse moves it."""
    if not _number(last):
        return None
    if not _number(first):
        return {"last": f"{last:.4g}", "first": None}
    change = (last - first) / abs(first) if first else None
    return {"last": f"{last:.4g}", "first": f"{first:.4g}", "since": since,
            # Under 1% is within what two draws of one corpus differ by: not red.
            "toward": bool(direction and change and abs(change) >= 0.01 and (change > 0) == (direction > 0)),
            "change": None if change is None else f"{change:+.1%}" if abs(change) < 0.1 else f"{change:+.0%}"}


def render(data: dict) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("testbed.report"), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template("report.html.j2").render(data)
