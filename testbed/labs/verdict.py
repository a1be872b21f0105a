"""A lab's expected outcomes as checks over metrics rows, and the verdict over seeds.

Three kinds, each a small function of one seed's runs that returns whether
the outcome held, the one figure it turned on, and the values behind it:
  compare  two arms at one generation: A lower (higher) than B; the figure is A - B
  trend    one arm over generations: up, down or flat; the figure is the relative change
  before   two metrics of one arm: which moved more from generation 0; the figure is the gap, in points
A check is decided only when every run it reads is finished and every value
it needs exists: a missing run makes it "not run", never held or failed,
since a verdict on part of the seeds would be cleaner than the evidence.
"""
import difflib
import math
import re
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

from testbed import TestbedError
from testbed.metrics import spec

KINDS = ("compare", "trend", "before")
# The keys each kind reads (besides kind): a key another kind uses is a typo here, not a no-op.
KEYS = {
    "compare": {"metric", "generation", "lower", "higher", "than", "margin", "share"},
    "trend": {"arm", "metric", "direction", "every_generation", "since", "within", "share"},
    "before": {"arm", "metric", "faster", "slower", "direction", "generation", "share"},
}
EVERY_KIND = {"kind", "reduced"}
# Two-sided 95% quantiles of Student's t for 1..29 degrees of freedom (scipy.stats.t.ppf(0.975, df)), kept
# here so that scipy is no dependency; from 30 degrees of freedom on, the normal quantile (1.96).
T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
        2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
        2.0595, 2.0555, 2.0518, 2.0484, 2.0452)
INTERVAL = ("95% interval of the mean over seeds: mean ± t × sd / √n, t Student's 0.975 quantile for n - 1 degrees "
            "of freedom (from a table, n <= 30) or the normal one (n > 30); none for one seed")


@dataclass
class Check:
    kind: str = ""  # compare, trend or before
    metric: str | None = None  # a metrics.jsonl key; nested ones with a dot: recall_by_band.rare
    generation: str = "last"  # compare, before: "last" or a generation number
    lower: str | None = None  # compare: the arm expected lower...
    higher: str | None = None  # ...or higher...
    than: str | None = None  # ...than this arm
    margin: float = 0.0  # compare: A may be this share of |B| on the wrong side and still hold ("nearly as good")
    arm: str | None = None  # trend, before
    direction: str | None = None  # trend: up, down or flat; before: up or down (the way collapse moves both metrics)
    every_generation: bool = False  # trend: every step too, not only the first generation against the last
    since: int = 0  # trend: the generation it starts from
    within: float = 0.05  # trend flat: the largest relative change that still reads as flat
    faster: str | None = None  # before: the metric expected to move more (metric.faster when metric is set)...
    slower: str | None = None  # ...than this one
    share: float = 1.0  # the share of seeds it must hold in; 1: every seed
    # Whether it also holds at the reduced size (seed 0), where the slow test suite runs every lab and fails when
    # it does not: false where the reduced size's model is too small to show it, as the lab file says why.
    reduced: bool = True


def validate(check: Check, keys: set, arms: list[str], where: str) -> None:
    """The check's keys fit its kind and name arms the lab has; where: 'labs/x.yaml: checks[2]'."""
    if check.kind not in KINDS:
        raise TestbedError(f"{where}.kind={check.kind!r} is not allowed; choose one of: {', '.join(KINDS)}")
    stray = sorted(keys - KEYS[check.kind] - EVERY_KIND)
    if stray:
        raise TestbedError(f"{where}: kind {check.kind} does not read {', '.join(stray)}; "
                           f"it reads {', '.join(sorted(KEYS[check.kind]))}")
    need = {"compare": ["metric", "than"], "trend": ["arm", "metric", "direction"],
            "before": ["arm", "faster", "slower", "direction"]}[check.kind]
    for key in need:
        if getattr(check, key) in (None, ""):
            raise TestbedError(f"{where}: kind {check.kind} needs {key}")
    if check.kind == "compare" and (check.lower is None) == (check.higher is None):
        raise TestbedError(f"{where}: kind compare needs exactly one of lower: ARM or higher: ARM (and than: ARM)")
    directions = ("up", "down", "flat") if check.kind == "trend" else ("up", "down")
    if check.kind != "compare" and check.direction not in directions:
        raise TestbedError(f"{where}.direction={check.direction!r} is not allowed; choose one of: {', '.join(directions)}")
    for arm in reads(check):
        if arm not in arms:
            raise TestbedError(f"{where}: no arm named {arm!r}; the lab's arms: {', '.join(arms)}")
    if check.kind == "compare" and (check.lower or check.higher) == check.than:
        raise TestbedError(f"{where}: compares arm {check.than} with itself; name two arms")
    if check.kind == "before" and check.faster == check.slower:
        raise TestbedError(f"{where}: faster and slower are both {check.faster}; name two metrics")
    if check.generation != "last" and not re.fullmatch(r"\d+", check.generation):
        raise TestbedError(f"{where}.generation={check.generation!r} must be last or a generation number")
    if check.kind == "before" and check.generation == "0":
        raise TestbedError(f"{where}.generation=0: kind before measures the change from generation 0; use 1 or last")
    # Finite too: a margin of .inf would hold whatever the runs wrote.
    for key, ok, allowed in [("share", 0 < check.share <= 1, "in (0, 1]"),
                             ("margin", 0 <= check.margin < math.inf, "a finite number >= 0"),
                             ("within", 0 <= check.within < math.inf, "a finite number >= 0"), ("since", check.since >= 0, ">= 0")]:
        if not ok:
            raise TestbedError(f"{where}.{key}={getattr(check, key)} must be {allowed}")
    for key in metric_keys(check):
        top, _, part = key.partition(".")  # recall_by_band.rare: the table names recall_by_band
        if (metric := spec.find(top)) is None:
            near = difflib.get_close_matches(top, [m.key for m in spec.METRICS], n=1)
            raise TestbedError(f"{where}: {key} is not a metric testbed writes"
                               f"{f' (did you mean {near[0]}?)' if near else ''}; every metric: docs/metrics.md")
        # Else the figure is missing in every run, and the check is "not run" only after all of them have trained.
        if part and metric.parts == ():
            raise TestbedError(f"{where}: {key}: {top} is one number, not a table; name it {top}")
        if metric.parts and part not in metric.parts:
            near = difflib.get_close_matches(part, metric.parts, n=1)
            raise TestbedError(f"{where}: {key}: {top} holds {', '.join(metric.parts)}"
                               f"{f' (did you mean {top}.{near[0]}?)' if near and part else ''}; name one, "
                               f"such as {top}.{(near or metric.parts)[0]}")
        if not part and metric.parts is None:
            raise TestbedError(f"{where}: {key} holds one figure per label; name one, such as {top}.human")


def reads(check: Check) -> list[str]:
    """The arms a check reads."""
    if check.kind == "compare":
        return [a for a in (check.lower or check.higher, check.than) if a]
    return [check.arm] if check.arm else []


def metric_keys(check: Check) -> list[str]:
    if check.kind == "before":
        return [f"{check.metric}.{m}" if check.metric else m for m in (check.faster, check.slower)]
    return [check.metric]


def describe(check: Check) -> str:
    at = "the last generation" if check.generation == "last" else f"generation {check.generation}"
    # 2/3 is "66.7%", not "67%": two seeds of three hold it, which 67% would not let.
    seeds = "in every seed" if check.share == 1 else f"in at least {format(100 * check.share, '.3g')}% of seeds"
    if check.kind == "compare":
        margin = f" (or within {check.margin:.0%} of it)" if check.margin else ""
        side = "lower" if check.lower else "higher"
        return f"{check.metric} at {at}: {check.lower or check.higher} {side} than {check.than}{margin}, {seeds}"
    every = ", at every generation" if check.every_generation else ""
    if check.kind == "trend":
        if check.direction == "flat":
            return (f"{check.metric} under {check.arm} stays within ±{check.within:.0%} from generation {check.since} "
                    f"to the last{every}, {seeds}")
        moves = "rises" if check.direction == "up" else "falls"
        return f"{check.metric} under {check.arm} {moves} from generation {check.since} to the last{every}, {seeds}"
    faster, slower = metric_keys(check)
    moves = "rises" if check.direction == "up" else "falls"
    return f"under {check.arm}, {faster} {moves} more than {slower} from generation 0 to {at} (relative change), {seeds}"


class Missing(Exception):
    """A run the check reads is absent or unfinished: args (arm, seed)."""


class Undefined(Exception):
    """A finished run lacks a value the check needs (a null metric, a zero to divide by)."""


class Seed:
    """One seed's finished runs: value(arm, generation, metric)."""

    def __init__(self, rows: dict, seed: int):
        self.rows, self.seed = rows, seed

    def _run(self, arm: str) -> dict:
        if (arm, self.seed) not in self.rows:
            raise Missing(arm, self.seed)
        return {r["generation"]: r for r in self.rows[(arm, self.seed)]}

    def last(self, arm: str) -> int:
        return max(self._run(arm))

    def at(self, generation: str, arm: str) -> int:
        return self.last(arm) if generation == "last" else int(generation)

    def value(self, arm: str, generation: int, metric: str) -> float:
        row = self._run(arm).get(generation)
        where = f"{metric} at generation {generation} of {arm}/seed={self.seed}"
        if row is None:
            raise Undefined(f"{where}: no such generation")
        value = row
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise Undefined(f"{where} is {value!r}, not a number")
        return float(value)


def _relative(before: float, after: float, what: str) -> float:
    if before == 0:
        raise Undefined(f"{what} starts at 0: no relative change")
    return (after - before) / abs(before)


def compare(check: Check, s: Seed) -> tuple[bool, float, dict]:
    a_arm = check.lower or check.higher
    a = s.value(a_arm, s.at(check.generation, a_arm), check.metric)
    b = s.value(check.than, s.at(check.generation, check.than), check.metric)
    slack = check.margin * abs(b)
    # "Within 50% of it" includes 50%; "lower than", without a margin, excludes a tie.
    wrong_side = (a - b) if check.lower else (b - a)
    # The edge is the edge whatever the floats: 1.02 - 1.0 is 0.020000000000000018, over a 2% margin of 1.0.
    held = (wrong_side <= slack or math.isclose(wrong_side, slack, rel_tol=1e-9)) if check.margin else wrong_side < 0
    return held, a - b, {a_arm: a, check.than: b}


def trend(check: Check, s: Seed) -> tuple[bool, float, dict]:
    series = [s.value(check.arm, g, check.metric) for g in range(check.since, s.last(check.arm) + 1)]
    what = f"{check.metric} of {check.arm}/seed={s.seed}"
    if len(series) < 2:  # lab run refuses such a plan; judge() may be called on any rows
        raise Undefined(f"{what}: no generation after generation {check.since} (the run ends at {s.last(check.arm)})")
    change = _relative(series[0], series[-1], what)
    if check.direction == "flat":
        # "Stays within ±5% from generation 4 to the last": every generation, not only the last, against the first.
        held = all(abs(_relative(series[0], v, what)) <= check.within for v in series[1:])
        if check.every_generation:
            held = held and all(abs(_relative(x, y, what)) <= check.within for x, y in zip(series, series[1:]))
        return held, change, {"series": series}
    way = 1 if check.direction == "up" else -1
    # A step's direction is its sign, defined where a relative change is not (a step from 0).
    steps = [way * (y - x) > 0 for x, y in zip(series, series[1:])] if check.every_generation else []
    return way * change > 0 and all(steps), change, {"series": series}


def before(check: Check, s: Seed) -> tuple[bool, float, dict]:
    g = s.at(check.generation, check.arm)
    moved = {m: _relative(s.value(check.arm, 0, m), s.value(check.arm, g, m), f"{m} of {check.arm}/seed={s.seed}")
             for m in metric_keys(check)}
    faster, slower = moved.values()
    way = 1 if check.direction == "up" else -1
    gap = (faster - slower) * way
    # "The rare band falls more than the common one": it has to fall, not only rise less.
    return gap > 0 and way * faster > 0, gap, moved


def interval(figures: list[float]) -> tuple[float, list[float] | None]:
    """The mean and its 95% interval over seeds (see INTERVAL)."""
    n = len(figures)
    mean = fmean(figures)
    if n < 2:
        return mean, None
    q = T975[n - 2] if n - 1 <= len(T975) else NormalDist().inv_cdf(0.975)
    half = q * stdev(figures) / math.sqrt(n)
    return mean, [mean - half, mean + half]


def judge(checks: list[Check], seeds: list[int], rows: dict, missing: dict | None = None) -> list[dict]:
    """Each check over the seeds. rows[(arm, seed)]: a finished run's metrics rows; a run absent from rows
    is missing, and missing[(arm, seed)] may say why (unfinished, failed)."""
    missing = missing or {}
    out = []
    for check in checks:
        per_seed, figures, absent, undefined = [], [], [], []
        for seed in seeds:
            s = Seed(rows, seed)
            try:
                held, figure, values = {"compare": compare, "trend": trend, "before": before}[check.kind](check, s)
            except Missing as e:
                name = f"{e.args[0]}/seed={seed}"
                absent.append(name)
                per_seed.append({"seed": seed, "missing": f"{name} ({missing.get(e.args, 'missing')})"})
                continue
            except Undefined as e:
                undefined.append(str(e))
                per_seed.append({"seed": seed, "undefined": str(e)})
                continue
            figures.append(figure)
            per_seed.append({"seed": seed, "held": held, "figure": figure, "values": values})
        n_held = sum(bool(p.get("held")) for p in per_seed)
        if absent or undefined:
            status = "not run"
        else:
            status = "held" if n_held >= check.share * len(seeds) - 1e-9 else "failed"
        mean, ci = interval(figures) if figures else (None, None)
        out.append({"check": describe(check), "kind": check.kind, "status": status, "reduced": check.reduced,
                    "figure": figure_name(check),
                    "relative": check.kind != "compare", "held_seeds": n_held, "seeds": len(seeds),
                    "share": check.share, "per_seed": per_seed, "mean": mean, "ci95": ci,
                    "missing": absent, "undefined": undefined})
    return out


def figure_name(check: Check) -> str:
    if check.kind == "compare":
        return f"{check.metric}: {check.lower or check.higher} - {check.than}"
    if check.kind == "trend":
        return f"relative change of {check.metric} from generation {check.since} to the last"
    faster, slower = metric_keys(check)
    sign = "" if check.direction == "up" else ", both signs flipped (falls read as positive)"
    return f"relative change of {faster} minus that of {slower}, in percentage points{sign}"


def _number(x: float, result: dict) -> str:
    """A before check's figure is a difference of two percentages: percentage points, not a percentage."""
    if result.get("kind") == "before":
        return f"{x * 100:+.1f} pp"
    return f"{x:+.1%}" if result["relative"] else f"{x:+.4g}"


def seed_line(result: dict, p: dict) -> str:
    if "missing" in p:
        return f"seed {p['seed']}: not run, {p['missing']}"
    if "undefined" in p:
        return f"seed {p['seed']}: undefined, {p['undefined']}"
    values = p["values"]
    if "series" in values:
        shown = " -> ".join(f"{v:.4g}" for v in values["series"])
    elif result["relative"]:
        shown = ", ".join(f"{k} {v:+.1%}" for k, v in values.items())
    else:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    return f"seed {p['seed']}: {shown}; {_number(p['figure'], result)} ({'held' if p['held'] else 'not held'})"


def mean_line(result: dict) -> str:
    if result["mean"] is None:
        return "no figure"
    n = len([p for p in result["per_seed"] if "figure" in p])
    if not result["ci95"]:
        return f"{_number(result['mean'], result)} from one seed (no interval)"
    lo, hi = result["ci95"]
    return (f"mean {_number(result['mean'], result)}, 95% interval [{_number(lo, result)}, {_number(hi, result)}] "
            f"over {n} seeds")


def summary(results: list[dict], size: str = "default") -> str:
    counts = {s: sum(r["status"] == s for r in results) for s in ("held", "failed", "not run")}
    line = (f"{counts['held']} of {len(results)} expected outcomes held, {counts['failed']} failed, "
            f"{counts['not run']} not run")
    unexpected = sum(not r.get("reduced", True) for r in results)
    if size == "reduced" and unexpected:
        line += f" ({unexpected} not expected at the reduced size)"
    if counts["held"] + counts["failed"] and all(r["seeds"] == 1 for r in results):
        # One draw: a gap smaller than what seeds differ by reads as held or failed all the same. Said in words the
        # CLI (--seeds) and the notebooks (SEEDS) share, and only where something was decided.
        line += ", from one seed (one draw: more seeds, such as 0, 1, 2, give an interval)"
    return line


def status(verdict: dict, result: dict) -> str:
    """held, failed or not run; at the reduced size, a check its lab does not expect there says so."""
    if verdict["size"] == "reduced" and not result.get("reduced", True):
        return f"{result['status']} (not expected at the reduced size)"
    return result["status"]


def over(verdict: dict, quote: str = "") -> str:
    """What the user laid over every arm or left out, if anything: the verdict is about the lab as run, not as written."""
    said = ", over every arm " + " ".join(f"{quote}{o}{quote}" for o in verdict.get("overrides") or []) \
        if verdict.get("overrides") else ""
    return said + (f", arms {', '.join(verdict['arms'])} only" if verdict.get("arms") else "")


def render_text(verdict: dict) -> str:
    lines = [f"lab {verdict['lab']} (size {verdict['size']}, seeds {', '.join(map(str, verdict['seeds']))}"
             f"{over(verdict)}): {verdict['question']}"]
    for r in verdict["checks"]:
        lines.append(f"{status(verdict, r):<8} {r['check']}")
        lines.append(f"{'':9}figure: {r['figure']}")
        lines += [f"{'':9}{seed_line(r, p)}" for p in r["per_seed"]]
        lines.append(f"{'':9}{mean_line(r)}")
    lines += [f"intervals: {INTERVAL}", f"verdict: {verdict['summary']}"]
    return "\n".join(lines)


def render_markdown(verdict: dict) -> str:
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = [f"# Lab {verdict['lab']}: {verdict['title']}", "", f"**{verdict['question']}**", "",
             f"Size `{verdict['size']}`, seeds {', '.join(map(str, verdict['seeds']))}{over(verdict, '`')}; "
             f"runs under `{verdict['out']}`; "
             # A link from this file's folder, where the report is: a path from where the command ran was wrong here.
             f"{'the report: [report/index.html](report/index.html)' if verdict.get('report') else 'no report'}.", "",
             f"**Verdict: {verdict['summary']}.**", "",
             *([f"What to look at: {verdict['look_at']}", ""] if verdict.get("look_at") else []),
             "| expected outcome | verdict | figure | per seed | mean (95% interval) |", "|---|---|---|---|---|"]
    for r in verdict["checks"]:
        seeds = "<br>".join(cell(seed_line(r, p)) for p in r["per_seed"])
        lines.append(f"| {cell(r['check'])} | {status(verdict, r)} | {cell(r['figure'])} | {seeds} | {cell(mean_line(r))} |")
    if verdict["missing"]:
        lines += ["", "Runs missing or unfinished: " + "; ".join(f"`{k}` ({v})" for k, v in verdict["missing"].items())]
    return "\n".join([*lines, "", f"{INTERVAL[0].upper()}{INTERVAL[1:]}.", ""])
