"""`testbed sweep CONFIG --set key=v1,v2 --seeds 0,1,2 [--jobs N]`: a grid of runs, then one report.

Each point of the grid is an ordinary run in its own folder under the
config's run_dir, named by its settings (mix.regime=anchor_seed=1), so
re-running the same sweep resumes every run where it stopped and skips the
finished ones. Every config of the grid is built and checked before the
first run starts: a typo in the last value fails at once, not an hour in.
The runs go one after the other, or N at once with --jobs N (testbed/parallel.py);
a run that fails is reported at the end and does not stop the others.
"""
import itertools
import re
import shutil
from dataclasses import replace
from pathlib import Path

from filelock import Timeout

from testbed import TestbedError
from testbed.config import Config, load_config, to_yaml


def split_values(item: str, values: str) -> list[str]:
    """v1,v2 split at the commas outside brackets and quotes: [human,synthetic] and 'a,b' stay whole."""
    parts, part, depth, quote = [], "", 0, None
    for ch in values:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[]":
            depth += 1 if ch == "[" else -1
        elif ch == "," and depth == 0:
            parts.append(part.strip())
            part = ""
            continue
        part += ch
    if quote or depth:
        raise TestbedError(f"--set {item!r}: {'a quote is not closed' if quote else 'its brackets do not pair up'}")
    return [*parts, part.strip()]


def parse_set(items: list[str]) -> list[tuple[str, list[str]]]:
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise TestbedError(f"--set {item!r} is not key=v1,v2 (for example --set mix.regime=replace,anchor)")
        if key == "seed":
            raise TestbedError("--set seed: use --seeds for seeds")
        if key == "run_dir":
            raise TestbedError("--set run_dir: the sweep names each run's folder under one run_dir; give it as an "
                               "override, run_dir=PATH")
        if key in (k for k, _ in grid):
            raise TestbedError(f"--set {key} is given twice; list all its values once: --set {key}=v1,v2")
        split = split_values(item, values)
        if len(set(split)) != len(split):
            raise TestbedError(f"--set {item!r} repeats a value: each names one run folder, so list it once")
        grid.append((key, split))
    return grid


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise TestbedError(f"--seeds {text!r} must be integers separated by commas, e.g. --seeds 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise TestbedError(f"--seeds {text!r} repeats a seed")
    return seeds


def plan(config: str, overrides: list[str], grid: list[tuple[str, list[str]]], seeds: list[int] | None) -> tuple[Path, list[Config]]:
    """The sweep's folder and the config of every run in it, all validated."""
    swept = {k for k, _ in grid}
    if seeds is not None and (given := next((o for o in overrides if o.partition("=")[0].strip() == "seed"), None)):
        raise TestbedError(f"{given} and --seeds both set the seed; give the seeds once, in --seeds")
    if clash := next((o.partition("=")[0] for o in overrides if o.partition("=")[0] in swept), None):
        raise TestbedError(f"{clash} is both swept (--set {clash}=...) and set ({clash}=...); give its values once, "
                           "in --set")
    # Checked as the grid's first run: a key the grid sets may be one the config needs (data.path for source=local).
    base = load_config(config, [*overrides, *(f"{k}={v[0]}" for k, v in grid)])
    root = Path(base.run_dir)
    if (root / "config.yaml").exists():
        raise TestbedError(f"run_dir={root} holds a single run; give the sweep a folder of its own, e.g. run_dir={root}-sweep")
    configs = []
    for values in itertools.product(*(v for _, v in grid)):
        for seed in seeds if seeds is not None else [base.seed]:
            settings = [f"{k}={v}" for (k, _), v in zip(grid, values)] + [f"seed={seed}"]
            name = re.sub(r"[^\w.=,+\-\[\]]", "-", "_".join(settings))
            configs.append(load_config(config, [*overrides, *settings, f"run_dir={root / name}"]))
    from testbed.corpus.sources import check_file
    from testbed.tracking import check_trackers

    for track in {tuple(c.track) for c in configs}:
        check_trackers(list(track))  # else every run would fail at its start
    folders = [c.run_dir for c in configs]
    if clash := next((f for f in folders if folders.count(f) > 1), None):
        # Two runs in one folder would fight over its lock, and the report would show one as the other.
        raise TestbedError(f"--set: two runs of the grid would share the folder {clash}: their values differ only "
                           "in characters a folder name cannot hold; write the values so they differ in letters or digits")
    same = {}
    for c in configs:  # values spelled apart that read as one (1 and 01, 0.5 and .5): one run made twice
        twin = same.setdefault(to_yaml(replace(c, run_dir="")), c)
        if twin is not c:
            raise TestbedError(f"--set: {Path(twin.run_dir).name} and {Path(c.run_dir).name} are the same run (their "
                               "values read as one); give each value once")
    for data in {c.data.path: c.data for c in configs}.values():
        check_file(data)  # else a misspelt --set data.path fails when its turn comes, after the runs before it
    return root, configs


def sweep(config: str, overrides: list[str], sets: list[str], seeds: str | None, jobs: int = 1,
          threads: int | None = None, address: str | None = None, say=print) -> tuple[Path | None, dict[str, str]]:
    """Run (or resume) the grid, then report on the runs that finished; returns the report (None when no run
    finished) and {run: error} of the runs that failed."""
    from testbed.parallel import run_all
    from testbed.report.compare import load_runs, table
    from testbed.report.page import build, check_replaceable, remove
    from testbed.rundir import check_can_hold, os_lock

    root, configs = plan(config, overrides, parse_set(sets), parse_seeds(seeds))
    if (root / "report").exists():  # before the runs, not after them
        check_replaceable(root / "report", option=None)
    # One sweep a folder: two started on one grid split it between them, each called the other's runs failed
    # ("in use"), and the report the last one wrote left out the runs the other had finished.
    made = not root.exists()
    lock = None
    if made or root.is_dir():  # a file there: the runs' own check names it, in one line
        check_can_hold(str(root))  # as that check would, for a file or a read-only folder above it
        root.mkdir(parents=True, exist_ok=True)
        lock = os_lock(root / ".sweep.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise TestbedError(f"run_dir={root} is in use by another testbed sweep; wait for it (run it again after "
                               "it to resume), or give this sweep another run_dir") from None
    try:
        failed = run_all([(Path(c.run_dir).name, c) for c in configs], jobs, threads, address, "sweep", say)
        finished = [c.run_dir for c in configs if Path(c.run_dir).name not in failed]
        if not finished:
            remove(root / "report")  # a report of earlier runs would read as this sweep's
            return None, failed
        runs = load_runs(finished)
        say(table(runs))
        return build(runs, root / "report", option=None), failed
    finally:
        if lock is not None:
            lock.release()
            if made and {p.name for p in root.iterdir()} <= {".sweep.lock"}:  # stopped before any run: as it was
                shutil.rmtree(root, ignore_errors=True)
