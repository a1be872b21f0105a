"""`testbed compare RUN...`: each run's last generation against its generation 0.

A run still in progress, or killed, is shown with the generations it has
finished and marked partial, never dropped: a missing run would make the
comparison look cleaner than it is.
"""
import re
from pathlib import Path

from testbed import TestbedError
from testbed.config import NOT_THE_EXPERIMENT, diff, load_saved, to_dict, yaml_value
from testbed.metrics import spec
from testbed.rundir import RunDir, read_json

def load_run(path: str | Path) -> dict:
    root = Path(path)
    if not (root / "config.yaml").is_file():
        if (root / "report.json").is_file():  # `compare runs/regimes/*` takes in the sweep's own report/
            raise TestbedError(f"{root}: a report testbed wrote, not a run; leave it out (for a sweep's runs: "
                               f"{root.parent}/*=*/, or read the report the sweep wrote there)")
        raise TestbedError(f"{root}: not a testbed run directory (no config.yaml)")
    cfg = load_saved(root / "config.yaml")
    rundir = RunDir(root)
    finished = rundir.finished_generations()
    for g in finished:
        rundir.verify(g)  # a report of a damaged generation would be a wrong report
    # From each finished generation, as DONE checked it: metrics.jsonl is derived from them, and after a kill
    # between a generation's rename and its rewrite, or a cut or edited copy, it would say something else.
    rows = [read_json(rundir.gen(g) / "metrics.json") for g in finished]
    planned = list(range(cfg.generations + 1))
    made = [read_json(rundir.gen(g) / "train.json") for g in finished]
    return {"name": root.name, "path": root, "config": to_dict(cfg), "rows": rows, "planned": cfg.generations,
            "finished": finished, "missing": [g for g in planned if g not in finished],
            "unfinished": sorted(int(p.name[4:7]) for p in root.glob("gen_[0-9][0-9][0-9].partial")),
            "partial": finished != planned, "environment": [m["environment"] for m in made if "environment" in m]}


def load_runs(paths: list[str | Path]) -> list[dict]:
    """The runs, each named by as much of its path as tells it apart from the others."""
    # The same folder named twice (base and ./base, or a glob and a name) is one run, listed once.
    once = {}
    for p in paths:
        once.setdefault(Path(p).resolve(), p)
    runs = [load_run(p) for p in once.values()]
    if not runs:  # a lab whose every run failed still writes its verdict
        return []
    # Seeds-only sweeps all name their runs seed=N: none/seed=1 and detector/seed=1 must not both read seed=1, and
    # a seed=N alone would hide what the run is (replace/seed=0 beside detector/seed=1 read as two seeds of one).
    resolved = [r["path"].resolve() for r in runs]  # `testbed compare .` inside a run names it too
    floor = [2 if re.fullmatch(r"seed=\d+", p.name) and len(p.parts) > 2 else 1 for p in resolved]
    for depth in range(1, max(len(p.parts) for p in resolved) + 1):
        names = [Path(*p.parts[-max(depth, least):]).as_posix() for p, least in zip(resolved, floor)]
        if len(set(names)) == len(names):
            break
    for run, name in zip(runs, names):
        run["name"] = name
    return runs


def differing_keys(runs: list[dict]) -> list[str]:
    keys = set()
    for run in runs[1:]:
        keys |= set(diff(runs[0]["config"], run["config"]))
    return sorted(keys - set(NOT_THE_EXPERIMENT))


def value(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def _figure(v) -> bool:
    """A number the table can print: not a null (a metric undefined at that size), a nested band or a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(runs: list[dict], metrics: list[str] | None = None) -> str:
    if not any(r["rows"] for r in runs):
        raise TestbedError(f"{', '.join(r['name'] for r in runs)}: no finished generation to compare yet; run "
                           f"{'it' if len(runs) == 1 else 'them'} first (testbed run resumes a run where it stopped)")
    available = {k for r in runs for row in r["rows"] for k in spec.numbers(row, ".")}
    for m in metrics or []:
        if m not in available:
            raise TestbedError(f"--metrics: no run has a number for {m!r}; available: {', '.join(sorted(available))}")
    metrics = metrics or [m for m in spec.headline() if m in available]
    header = ["run", "generations", *metrics]
    lines = []
    for run in runs:
        rows = [spec.numbers(row, ".") for row in run["rows"]]  # recall_by_band.rare, as metrics.csv names it
        done = f"{rows[-1]['generation'] if rows else '-'}/{run['planned']}" + (" partial" if run["partial"] else "")
        cells = [run["name"], done]
        for m in metrics:
            if not rows or m not in rows[-1]:
                cells.append("-")
                continue
            if m not in rows[0]:
                cells.append(f"{rows[-1][m]:.3f}")
                continue
            first, last = rows[0][m], rows[-1][m]
            change = f"{(last - first) / abs(first):+.0%}" if first else "n/a"
            since = f" (gen {rows[0]['generation']})" if rows[0]["generation"] else ""  # generation 0 is missing
            cells.append(f"{first:.3f}{since} -> {last:.3f} ({change})")
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    arrows = ", ".join(f"{m} {'up' if spec.direction(m) > 0 else 'down'}" for m in metrics if spec.direction(m))
    differs = [f"{k}: " + ", ".join(f"{yaml_value(value(r['config'], k))} ({r['name']})" for r in runs)
               for k in differing_keys(runs)]
    return "\n".join([*(["configs differ in"] + [f"  {d}" for d in differs] + [""] if differs else []),
                      fmt(header), *map(fmt, lines),
                      f"generation 0 -> last finished generation; collapse moves {arrows}"])


def summary(rows: list[dict]) -> str:
    """A run's headline figures, one line per generation: what `testbed run` prints at its end."""
    keys = spec.summary_keys(rows)
    lines = ["  ".join(f"{k:>17}" for k in keys)]
    cell = lambda v: f"{v:>17.4f}" if _figure(v) and not isinstance(v, int) else f"{'-' if v is None else v:>17}"  # noqa: E731
    for r in rows:
        lines.append("  ".join(cell(r[k]) for k in keys))
    return "\n".join(lines)
