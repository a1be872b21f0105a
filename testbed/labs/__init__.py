"""Teaching labs: one question each, its runs over seeds, and a verdict a student can trust.

A lab is a YAML file in labs/ whose keys are the field names of Lab below,
the one definition the command line and a notebook share: the runs (a base
config, one arm per run with its overrides, at a size), the seeds, the
expected outcomes as checks over the metrics rows (testbed/labs/verdict.py)
and the text a student reads. `testbed lab run NAME` runs every arm x seed
as an ordinary run in OUT/<arm>/seed=<s>/ (so a rerun resumes, as a sweep's
does), builds the comparison report in OUT/report/, and writes the verdict
to OUT/verdict.json and OUT/verdict.md.
"""
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from testbed import TestbedError
from testbed.config import Config, _build, load_config, load_saved, read_mapping
from testbed.labs.verdict import INTERVAL, Check, judge, reads, render_markdown, render_text, summary, validate

LABS = Path(__file__).resolve().parents[2] / "labs"  # beside configs/, which lab files name as their base
SIZES = ("default", "reduced", "gpu")
# The labs that the nano model (model.preset=nano, for a CPU without native bf16) answered as the default size does,
# over 3 seeds (docs/labs.md#without-native-bf16); `verified` does not work with it.
NANO_ANSWERS = ("collapse", "sampling")


@dataclass
class Arm:
    name: str = ""  # its runs' folder: OUT/<name>/seed=<s>/
    overrides: list[str] = field(default_factory=list)  # key=value, over the base and the size


@dataclass
class Sizes:
    default: list[str] = field(default_factory=list)  # the lab as a lecture runs it
    reduced: list[str] = field(default_factory=list)  # seconds a run: checks the pipeline, not the science
    gpu: list[str] = field(default_factory=list)  # a bigger model and budget for one GPU


@dataclass
class Text:
    predict: str = ""  # asks the student to write a prediction before running
    look_at: str = ""  # which figures and report plots answer the question
    discuss: list[str] = field(default_factory=list)
    extend: str = ""  # one extension to try


@dataclass
class Lab:
    name: str = ""  # the file's name
    title: str = ""
    question: str = ""  # the one question the lab answers, as a student would ask it
    # Minutes for one seed at the default size on a 2-core CPU, as stated by the lab: every lab in labs/ states it
    # (tests/test_labs.py); a lab of one's own may not have been timed yet.
    time: float | None = None
    time_precision: str = "bf16"  # what time was measured in: bf16 (a CPU with native bf16) | fp32 (the Intel Xeon's)
    base: str = ""  # the config every arm starts from, relative to the lab file (resolved when loaded)
    arms: list[Arm] = field(default_factory=list)
    sizes: Sizes = field(default_factory=Sizes)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    checks: list[Check] = field(default_factory=list)
    text: Text = field(default_factory=Text)


@dataclass
class Planned:
    arm: str
    seed: int
    config: Config


def names() -> list[str]:
    return sorted(p.stem for p in LABS.glob("*.yaml"))


def find(name: str) -> Path:
    """A lab by name (a file in labs/), or by the path of a lab file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise TestbedError(f"lab file not found: {path}")
        return path
    if not (LABS / f"{name}.yaml").is_file():
        raise TestbedError(f"no lab named {name!r}; the labs: {', '.join(names()) or f'none (no {LABS})'} "
                           "(or give the path of a lab file)")
    return LABS / f"{name}.yaml"


def load(name: str) -> Lab:
    path = find(name)
    raw = read_mapping(path)
    if "arms" not in raw and "checks" not in raw and raw.keys() & {f.name for f in fields(Config)}:
        raise TestbedError(f"{path} is a run's config, not a lab (no arms, no checks): run it with `testbed run {path}`, "
                           "or name a lab from `testbed lab list`")
    for key in ("arms", "checks"):  # a stray "-" reads as null, which the builder would turn into a default entry
        for i, entry in enumerate(raw.get(key) or []):
            if not isinstance(entry, dict):
                raise TestbedError(f"{path}: {key}[{i}] is {entry!r}, not a mapping; give "
                                   f"{'{name: ARM, overrides: [...]}' if key == 'arms' else '{kind: ..., metric: ...}'}")
    try:
        lab = _build(Lab, raw, "")  # the config's own builder: the same type checks and did-you-mean lines
    except TestbedError as e:
        # Its lines speak of config keys and whitelist examples; a lab file's reader needs neither.
        message = str(e).replace("unknown config key", "unknown lab key").replace(" such as [human]", "")
        raise TestbedError(f"{path}: {message}") from None
    for key in ("name", "title", "question", "base"):
        if not getattr(lab, key):
            raise TestbedError(f"{path}: {key} is missing; every lab states its name, title, question and base config")
    if lab.name != path.stem:
        raise TestbedError(f"{path}: name={lab.name!r} must be the file's name, {path.stem!r}")
    if lab.time is not None and not lab.time > 0:
        raise TestbedError(f"{path}: time={lab.time} must be > 0 (minutes for one seed at the default size), or left "
                           "out until it is measured")
    if lab.time_precision not in ("bf16", "fp32"):
        raise TestbedError(f"{path}: time_precision={lab.time_precision!r} must be bf16 or fp32 (what time was measured in)")
    base = path.parent / lab.base
    if not base.is_file():
        raise TestbedError(f"{path}: base={lab.base!r}: no such config file (the path is relative to the lab file)")
    lab.base = str(base.resolve())
    arms = [a.name for a in lab.arms]
    if not arms:
        raise TestbedError(f"{path}: arms is empty; give at least one {{name, overrides}}")
    for arm in arms:
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", arm) or arm in RESERVED:
            raise TestbedError(f"{path}: arm name {arm!r} must be letters, digits, _ . - (and not "
                               f"{', '.join(map(repr, RESERVED))}): it names a folder beside the lab's own files")
    if len(set(arms)) != len(arms):
        raise TestbedError(f"{path}: arm names repeat ({', '.join(arms)}); each arm names its own folder")
    for where, items in [*((f"arm {a.name}", a.overrides) for a in lab.arms),
                         *((f"sizes.{size}", getattr(lab.sizes, size)) for size in SIZES)]:
        for item in items:  # plan sets both for every run, after these: they would be dropped, yet read as applied
            if (key := item.partition("=")[0].strip()) in ("seed", "run_dir"):
                raise TestbedError(f"{path}: {where}: {item}: a lab sets each run's {key} itself; "
                                   f"{'list the seeds under seeds:' if key == 'seed' else 'give --out to lab run'}")
    if not lab.seeds or len(set(lab.seeds)) != len(lab.seeds):
        raise TestbedError(f"{path}: seeds={lab.seeds} must list at least one seed, none twice")
    if not lab.checks:
        raise TestbedError(f"{path}: checks is empty; a lab states at least one expected outcome")
    for i, (check, keys) in enumerate(zip(lab.checks, raw["checks"])):
        validate(check, set(keys), arms, f"{path}: checks[{i}]")
    return lab


RESERVED = ("report", "verdict.json", "verdict.md")  # what OUT holds besides the arms' folders


def default_out(lab: Lab, size: str) -> Path:
    return Path("runs/labs") / (lab.name if size == "default" else f"{lab.name}-{size}")


def plan(lab: Lab, size: str = "default", seeds: list[int] | None = None, out=None,
         overrides: list[str] = (), arms: list[str] | None = None) -> tuple[Path, list[Planned]]:
    """The lab's folder and the config of every arm x seed, all built and checked before any run starts.
    overrides: key=value laid over every arm last, as a user varies the whole lab (train.mixed_precision=fp32).
    arms: only these of the lab's arms (default all): the checks that read another are not run."""
    if size not in SIZES:
        raise TestbedError(f"--size {size!r} is not allowed; choose one of: {', '.join(SIZES)}")
    if size != "default" and not getattr(lab.sizes, size):  # else it would run at the default size, unsaid
        raise TestbedError(f"lab {lab.name}: --size {size}, but the lab file has no sizes.{size} (its key=value "
                           f"overrides); add them, or leave --size out for its default size")
    running = chosen(lab, arms)
    if seeds is not None and (isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__")
                              or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise TestbedError(f"seeds={seeds!r} must be a list of whole numbers, such as [0] or [0, 1, 2]")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise TestbedError(f"seeds={list(seeds)} must list at least one seed, none twice (a seed run twice would "
                           "count twice in the interval)")
    if out is not None and not str(out).strip():  # --out "$OUT" with OUT unset: every run would land in this folder
        raise TestbedError("--out is empty: give the lab a folder of its own, or leave --out out for "
                           f"{default_out(lab, size)}")
    out = Path(out) if out is not None else default_out(lab, size)
    if out.exists() and not out.is_dir():
        raise TestbedError(f"--out {out} is a file; give the lab a folder")
    if (out / "config.yaml").exists():
        raise TestbedError(f"--out {out} holds a single run; give the lab a folder of its own")
    for item in overrides:  # the lab sets both for every run: an override would be dropped, yet shown as applied
        key = item.partition("=")[0].strip()
        if key in ("seed", "run_dir"):
            raise TestbedError(f"{item}: a lab sets each run's {key}; use {'--seeds' if key == 'seed' else '--out'}")
    planned = []
    for arm in lab.arms:
        if arm.name not in running:
            continue
        for seed in seeds or lab.seeds:
            try:
                cfg = load_config(lab.base, [*getattr(lab.sizes, size), *arm.overrides, *overrides, f"seed={seed}",
                                             f"run_dir={out / arm.name / f'seed={seed}'}"])
            except TestbedError as e:
                raise TestbedError(f"lab {lab.name}, arm {arm.name}, size {size}: {e}") from None
            planned.append(Planned(arm.name, seed, cfg))
    if planned:  # else every run would fail at its start, and the lab call them unfinished
        from testbed.corpus.sources import check_file
        from testbed.tracking import check_trackers

        check_trackers(planned[0].config.track)
        for data in {p.config.data.path: p.config.data for p in planned}.values():
            check_file(data)
    generations = {p.arm: p.config.generations for p in planned}
    for i, c in enumerate(lab.checks):
        where = f"lab {lab.name}, size {size}: checks[{i}]"
        for arm in [a for a in reads(c) if a in generations]:
            last = generations[arm]
            if c.kind == "trend" and c.since >= last:
                raise TestbedError(f"{where}: since={c.since} leaves no generation after it (arm {arm} runs to {last})")
            g = last if c.generation == "last" else int(c.generation)
            if c.kind != "trend" and g > last:
                raise TestbedError(f"{where}: generation={c.generation} is past arm {arm}'s last generation ({last})")
            if c.kind == "before" and g == 0:
                raise TestbedError(f"{where}: arm {arm} has no generation after 0 to measure a change at")
        lasts = {a: generations[a] for a in reads(c) if a in generations}
        if c.kind == "compare" and c.generation == "last" and len(set(lasts.values())) > 1:
            raise TestbedError(f"{where}: compares {' and '.join(lasts)} at the last generation, but their last "
                               f"generations differ ({', '.join(f'{a}: {g}' for a, g in lasts.items())}); "
                               "give generation: N, or the same generations to both arms")
    return out, planned


def runs_left_out(lab: Lab, size: str, seeds: list[int], out: Path, overrides: list[str],
                  arms: list[str] | None) -> list[Planned]:
    """The runs --arms leaves out, as donors of a generation 0 they may hold; none where the overrides, valid for
    the arms chosen, do not build for the others (the command runs only those it was asked for)."""
    if arms is None:
        return []
    try:
        return [p for p in plan(lab, size, seeds, out, overrides)[1] if p.arm not in arms]
    except TestbedError:
        return []


def chosen(lab: Lab, arms: list[str] | None) -> list[str]:
    """The arms to run: all the lab's, or those named (each one of the lab's, none twice)."""
    names = [a.name for a in lab.arms]
    if not arms:
        return names
    unknown = [a for a in arms if a not in names]
    if unknown or len(set(arms)) != len(arms):
        raise TestbedError(f"--arms {','.join(arms)}: {'no arm ' + ', '.join(map(repr, unknown)) if unknown else 'an arm repeats'}"
                           f" in lab {lab.name}; its arms: {', '.join(names)}")
    return [a for a in names if a in arms]


def share_first_generations(planned: list[Planned], lab: str, jobs: int, threads, address, say,
                            others: list[Planned] = ()) -> None:
    """Train each seed's model 0 once. Arms that differ only where generation 0 does not look (mix, curation)
    start from a copy of one arm's whole generation 0; arms that differ in sampling as well start from a copy
    of its model 0 and sample and score their own generation 0. The donors' runs stop after generation 0 here.
    others: the arms left out by --arms; one whose folder already holds its generation 0 is a donor too, so an
    arm run later, on its own, starts from the model the others did (a GPU would not train the same one twice).
    A run that fails here is left to the lab's run proper, which runs it whole and reports it."""
    from dataclasses import replace

    from testbed.parallel import run_all
    from testbed.rundir import NOT_READ_BY_GENERATION_0, NOT_READ_BY_MODEL_0, RunDir, first_generation, same_generation_0
    from testbed.tokenizer import check_reads_unk_whole, load_tokenizer

    def holds_its_own(donor, unread) -> bool:
        """The donor's folder holds the run the lab plans there, not an older run of another config (a lab run
        before with other overrides): that one's generation 0 is not the one the sharer's config asks for."""
        try:
            saved = load_saved(Path(donor.config.run_dir) / "config.yaml")
        except TestbedError:
            return False
        return same_generation_0(saved, donor.config, unread)

    ready = [o for o in others if RunDir(o.config.run_dir).finished(0)]
    by_generation, by_model = {}, {}
    for o in ready:  # first, so that a finished generation 0 is preferred to training one
        if holds_its_own(o, NOT_READ_BY_GENERATION_0):
            by_generation.setdefault((o.seed, first_generation(o.config)), o)
        if holds_its_own(o, NOT_READ_BY_MODEL_0):
            by_model.setdefault((o.seed, first_generation(o.config, NOT_READ_BY_MODEL_0)), o)
    for p in planned:
        by_generation.setdefault((p.seed, first_generation(p.config)), p)
        by_model.setdefault((p.seed, first_generation(p.config, NOT_READ_BY_MODEL_0)), p)
    generation_copies, model_copies = [], []
    for p in planned:
        if Path(p.config.run_dir).exists():
            continue
        donor = by_generation[(p.seed, first_generation(p.config))]
        if donor is not p:
            generation_copies.append((donor, p))
        elif (donor := by_model[(p.seed, first_generation(p.config, NOT_READ_BY_MODEL_0))]) is not p:
            model_copies.append((donor, p))

    # Checked before anything is trained or copied: a pre-fix tokenizer would travel with the generation 0 it made.
    for donor in {d.config.run_dir: d for d, _ in generation_copies + model_copies}.values():
        if RunDir(donor.config.run_dir).finished(0):
            folder = Path(donor.config.run_dir) / "tokenizer"
            check_reads_unk_whole(load_tokenizer(folder), folder)

    def first(runs):
        """Generation 0 of each donor that does not have it yet."""
        todo = {d.config.run_dir: d for d in runs if not RunDir(d.config.run_dir).finished(0)}
        if todo:
            run_all([(f"{d.arm}/seed={d.seed} generation 0", replace(d.config, generations=0)) for d in todo.values()],
                    jobs, threads, address, f"lab {lab}", say)

    def copy(pairs, model_only):
        unread = NOT_READ_BY_MODEL_0 if model_only else NOT_READ_BY_GENERATION_0
        for donor, p in pairs:
            if (RunDir(donor.config.run_dir).finished(0) and not Path(p.config.run_dir).exists()
                    and holds_its_own(donor, unread)):
                RunDir(p.config.run_dir).start_from(RunDir(donor.config.run_dir), p.config, model_only)
                say(f"lab {lab}: {'model' if model_only else 'generation'} 0 of {donor.arm}/seed={donor.seed} "
                    f"is shared by {p.arm}/seed={p.seed}")

    model_sharers = {id(p) for _, p in model_copies}
    first([d for d, _ in model_copies] + [d for d, _ in generation_copies if id(d) not in model_sharers])
    copy(model_copies, model_only=True)
    first([d for d, _ in generation_copies if id(d) in model_sharers])  # they sample with the shared model 0
    copy(generation_copies, model_only=False)


def trains_in_fp32_here() -> bool:
    """No GPU and a CPU where bf16 would be slower: the labs' stated minutes (bf16) would mislead here."""
    import torch

    from testbed.device import fast_cpu_bf16

    return not torch.cuda.is_available() and not fast_cpu_bf16()


def opening(lab: Lab, size: str, seeds: list[int], planned: list[Planned], out: Path, overrides, arms) -> str:
    """What `lab run` is about to do and, where the lab's stated time applies, how long a seed took."""
    n_arms = len(planned) // len(seeds)
    line = (f"lab {lab.name}: {len(planned)} runs ({n_arms} arm{'s' if n_arms > 1 else ''} x seeds "
            f"{','.join(map(str, seeds))}) into {out}")
    if size != "default" or overrides or arms or lab.time is None:
        return line
    if lab.time_precision == "fp32":
        line += (f"; stated: {lab.time:g} min a seed on a 2-core Intel Xeon in fp32 (not timed with native bf16; an AMD "
                 "EPYC without AVX-512 took 2.2x the Xeon's time on the collapse lab)")
    else:
        line += f"; stated: {lab.time:g} min a seed on a 2-core CPU with native bf16"
        if trains_in_fp32_here():
            line += (", and this CPU trains in fp32 (bf16 would be slower here), which on 2 cores took 1.15-1.3x as long on "
                     "an Intel Xeon and 2.5-2.75x on an AMD EPYC without AVX-512 (docs/labs.md#without-native-bf16)")
    return line


def listing() -> tuple[str, list[str]]:
    """The table `lab list` prints, and the error of each lab file that does not load: one broken file (a lab being
    written) must not hide the others from a class."""
    labs, broken = [], []
    for name in names():
        try:
            labs.append(load(name))
        except TestbedError as e:
            broken.append(str(e))
    width = max((len(lab.name) for lab in labs), default=0)
    lines = [f"{lab.name:<{width}}  {'?' if lab.time is None else format(lab.time, 'g'):>4} min"
             f"{'*' if lab.time_precision == 'fp32' else ' '} {lab.question}" for lab in labs]
    lines.append("(minutes for one seed at the default size on a 2-core CPU with native bf16, as each lab states them, "
                 "measured for the labs shipped; over a lecture's 15, run it ahead: docs/labs.md; "
                 "`testbed lab run NAME` runs every seed of the lab)")
    if any(lab.time_precision == "fp32" for lab in labs):
        lines.append("* timed in fp32 on a 2-core Intel Xeon, where the other labs took 1.15-1.3x their stated time; "
                     "not yet timed with native bf16")
    if trains_in_fp32_here():
        # Said before a class waits on it: the stated minutes would mislead a teacher on such a laptop.
        lines.append("bf16 would be slower on this CPU, so the labs train in fp32 here: how much longer that takes depends on "
                     "the CPU's fp32 speed; on 2 cores 1.15-1.3x on an Intel Xeon (collapse: 10 min against 7.8) and 2.5-2.75x on an "
                     "AMD EPYC without AVX-512 (collapse: 21.5 min, human-share: 31 against 13); `testbed lab run NAME model.preset=nano` trains a model of "
                     f"0.4M parameters instead of 1M, 2.4x as fast; over 3 seeds it answered {' and '.join(NANO_ANSWERS)} (9 and 12 "
                     "min a seed) as the default size does, not the other labs; or run them ahead (docs/labs.md#without-native-bf16)")
    return "\n".join(lines), broken


def run_lab(lab: Lab, size: str = "default", seeds: list[int] | None = None, out=None, say=print,
            jobs: int = 1, threads: int | None = None, address: str | None = None, overrides: list[str] = (),
            arms: list[str] | None = None) -> dict:
    """Run (or resume) every arm x seed, then write the report and the verdict; returns the verdict.
    jobs, threads, address: as `testbed sweep`'s (testbed/parallel.py): jobs runs at once on Ray, else one by one here.
    overrides: key=value over every arm; arms: only these arms (plan)."""
    from testbed.parallel import on_ray, run_all
    from testbed.report.compare import load_runs

    seeds = lab.seeds if seeds is None else seeds
    out, planned = plan(lab, size, seeds, out, overrides, arms)
    check_out(out, planned)
    say(opening(lab, size, seeds, planned, out, overrides, arms))
    # A run that fails does not stop the others: they still answer the checks that do not read it.
    named = {f"{p.arm}/seed={p.seed}": p for p in planned}
    with on_ray(jobs, threads, address):  # one Ray for both steps: starting one takes seconds
        share_first_generations(planned, lab.name, jobs, threads, address, say,
                                runs_left_out(lab, size, seeds, out, overrides, arms))
        stopped = run_all([(name, p.config) for name, p in named.items()], jobs, threads, address, f"lab {lab.name}",
                          say)
    failed = {(named[name].arm, named[name].seed): f"stopped: {error}" for name, error in stopped.items()}
    runs = load_runs([p.config.run_dir for p in planned if (Path(p.config.run_dir) / "config.yaml").is_file()])
    by_path = {Path(r["path"]).resolve(): r for r in runs}
    rows, missing = {}, {}
    for p in planned:
        key, run = (p.arm, p.seed), by_path.get(Path(p.config.run_dir).resolve())
        if key in failed:  # its folder may hold an older run of another config, which answers nothing here
            missing[key] = failed[key]
        elif run is None:
            missing[key] = "no run directory"
        elif lacking := [g for g in range(p.config.generations + 1) if g not in run["finished"]]:
            wanted = p.config.generations + 1
            missing[key] = f"unfinished: {wanted - len(lacking)} of {wanted} generations"
        else:
            # A folder run further before (generations=8 once, the lab's 5 now) holds more, or was planned to: the
            # checks and the report read the generations this lab runs, so "last" is the lab's last.
            last = p.config.generations
            run["rows"] = [r for r in run["rows"] if r["generation"] <= last]
            run.update(finished=[g for g in run["finished"] if g <= last], planned=last, missing=[], partial=False)
            rows[key] = run["rows"]
    running = chosen(lab, arms)
    left_out = {(a.name, s): "not in --arms" for a in lab.arms if a.name not in running for s in seeds}
    results = judge(lab.checks, seeds, rows, {**missing, **left_out})
    verdict = {"lab": lab.name, "title": lab.title, "question": lab.question, "look_at": lab.text.look_at,
               "size": size, "seeds": seeds,
               "overrides": list(overrides), "arms": running if arms else None, "out": str(out),
               "summary": summary(results, size), "checks": results,
               "missing": {f"{a}/seed={s}": why for (a, s), why in missing.items()},
               "interval": INTERVAL}
    # A failed run's folder may hold an older run of another config: the report draws only what the verdict read.
    shown = [r for r in runs if not any(Path(named[n].config.run_dir).resolve() == Path(r["path"]).resolve()
                                        for n in stopped)]
    return write_verdict(out, verdict, shown)


def check_out(out: Path, planned: list[Planned]) -> None:
    """Refuse, before any run starts, an OUT whose folders hold runs of another config (a mistaken override, or
    another lab's folder) or whose report/ is not one this testbed wrote: every run would stop, or the report
    fail at the end, and the lab's verdict be written over by one that answers nothing."""
    from testbed.report.page import check_replaceable
    from testbed.rundir import RunDir

    stale = [f"{p.arm}/seed={p.seed} (changed: {', '.join(changed)})" for p in planned
             if (Path(p.config.run_dir) / "config.yaml").is_file()
             and (changed := RunDir(p.config.run_dir).changes_barring(p.config))]
    if stale:
        raise TestbedError(f"--out {out} holds runs of another config: {'; '.join(stale)}; run the lab with the "
                           "overrides those were run with, or give it a new --out")
    if (out / "report").exists():
        check_replaceable(out / "report", option=None)


def write_verdict(out: Path, verdict: dict, runs: list) -> dict:
    """OUT/verdict.json, OUT/verdict.md and OUT/report/ from one verdict and its runs.

    Several `lab run`s may share one OUT (a seed each) and finish together: each file is replaced whole, and
    the lock makes the three one process's, whichever writes last."""
    from testbed.report.page import build, remove
    from testbed.rundir import os_lock, write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    with os_lock(out / ".verdict.lock"):  # waits for another process's writes
        # The report first: a verdict written before it named a report that a kill or a full disk then left
        # missing, or an older run's. Stopped in between, the old verdict stays beside the new report.
        if runs:
            verdict["report"] = str(out / "report" / "index.html")  # what build() returns, named in verdict.md
            build(runs, out / "report", option=None, lab=verdict)
        else:  # an earlier report would be read as this verdict's
            remove(out / "report")
        write_json(out / "verdict.json", verdict)
        write_text(out / "verdict.md", render_markdown(verdict))
    return verdict


__all__ = ["Arm", "Check", "Lab", "Planned", "Sizes", "Text", "find", "listing", "load", "names", "plan", "render_text",
           "run_lab", "share_first_generations", "write_verdict"]
