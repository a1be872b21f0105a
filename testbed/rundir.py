"""The run directory: layout, atomic writes, the lock, and what is finished.

runs/<name>/
  config.yaml     the resolved config: the run's identity
  split.json      which human documents are held out
  tokenizer/      the run's tokenizer (PreTrainedTokenizerFast files)
  reference.json  the human text's own scores at the evaluation sizes
  gen_000/        model/, corpus.jsonl, corpus.json, train.json, [curation.json], metrics.json, log.txt, DONE
  metrics.jsonl   one row per finished generation, rebuilt from gen_*/metrics.json

A generation is built in gen_NNN.partial/ and renamed to gen_NNN/ only after
its DONE marker is written, so a killed run never leaves a generation that
looks finished; the next run deletes the partial one and starts it again.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from filelock import FileLock, Timeout

from testbed import TestbedError, first_line, gen_name
from testbed.config import NOT_THE_EXPERIMENT, Config, diff, load_saved, to_dict, to_yaml


def write_text(path: Path, text: str) -> None:
    """Write then rename: a reader sees the old file or the whole new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; run files are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def os_lock(path: Path) -> FileLock:
    """A lock the OS holds for this process (flock on Linux and macOS, LockFileEx on Windows), so a killed
    process never leaves a folder locked. Never a lock file's mere presence: that one would outlive a kill."""
    return FileLock(path, fallback_to_soft=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain(value):
    """A numpy number (a metric function's np.float32) as the Python number it is; anything else is a bug to name."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON: a metric or record must hold numbers, strings, "
                    "lists and dicts")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_plain) + "\n")


def write_jsonl(path: Path, rows) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_plain) + "\n" for r in rows))


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:  # JSON, or UTF-8: a file cut short or edited by hand
        raise TestbedError(f"{path}: damaged ({e}); restore it from a copy, or start again in a new folder") from None


def read_jsonl(path: Path) -> list:
    with open(path, encoding="utf-8") as f:
        try:
            return [json.loads(line) for line in f if line.strip()]
        except ValueError as e:
            raise TestbedError(f"{path}: damaged ({e}); restore it from a copy, or start again in a new folder") from None


def changed_config(saved_path: Path, cfg: Config) -> list[str]:
    """The keys in which cfg differs from the run whose config.yaml is saved_path, but for those a resumed run
    may change: its folder's spelling, `generations` and `track`."""
    return [k for k in diff(to_dict(load_saved(saved_path)), to_dict(cfg)) if k not in NOT_THE_EXPERIMENT]


# Generation 0 trains from scratch on the human split and samples before anything is mixed or curated, so it reads
# none of these: runs that differ only here have the same generation 0, bit for bit, and a lab trains it once.
NOT_READ_BY_GENERATION_0 = ("mix", "curate", "train.init", "generations", "run_dir", "track")
# Model 0 is trained before anything is sampled: runs that differ in sampling as well train the same model 0,
# which a lab trains once, and each samples and scores its own generation 0 (RunDir.FIRST_MODEL).
NOT_READ_BY_MODEL_0 = (*NOT_READ_BY_GENERATION_0, "sample")


def first_generation(cfg: Config, unread=NOT_READ_BY_GENERATION_0) -> str:
    """What generation 0 of cfg reads, as text: equal for runs whose generation 0 is the same.
    unread=NOT_READ_BY_MODEL_0: what model 0's training reads."""
    config = to_dict(cfg)
    if cfg.sample.unit == "verified" and "sample" not in unread:
        # Generation 0 then writes until enough of its samples pass the verifier the next generation curates with.
        config["read by sample.unit=verified"] = {"verifier": config["curate"]["verifier"],
                                                  "keep_unfinished": config["mix"]["keep_unfinished"]}
    for key in unread:
        *parents, last = key.split(".")
        section = config
        for part in parents:
            section = section[part]
        del section[last]
    return json.dumps(config, sort_keys=True)


def same_generation_0(saved: Config, cfg: Config, unread=NOT_READ_BY_GENERATION_0) -> bool:
    """Whether a run saved under `saved` holds cfg's generation 0 (unread=NOT_READ_BY_MODEL_0: its model 0): it
    reads none of the keys they differ in."""
    return first_generation(saved, unread) == first_generation(cfg, unread)


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.created = False  # by this process: only then may a failure before generation 0 remove it
        self._lock = None

    def gen(self, g: int) -> Path:
        return self.root / gen_name(g)

    def finished(self, g: int) -> bool:
        return (self.gen(g) / "DONE").exists()

    def complete(self, generations: int) -> bool:
        """Generations 0 to `generations` are all finished: a rerun has nothing left to train."""
        return all(self.finished(g) for g in range(generations + 1))

    def finished_generations(self) -> list[int]:
        gens = sorted(int(p.name[4:]) for p in self.root.glob("gen_[0-9][0-9][0-9]") if (p / "DONE").exists())
        return gens

    def check_unbroken(self) -> None:
        """Stop with one line where a finished generation follows one that is not: it was made from what that one
        wrote, which is gone, and remaking only the missing one would leave the later ones made from other text."""
        done = self.finished_generations()
        gap = next((g for g in range(done[-1]) if g not in done), None) if done else None
        if gap is not None:
            later = [self.gen(k).name for k in done if k > gap]
            named = ", ".join(later) if len(later) <= 3 else f"{later[0]} to {later[-1]}"
            raise TestbedError(f"{self.gen(gap)} is not finished, but {named} {'is' if len(later) == 1 else 'are'}: made "
                               f"from the generation {gap} that is gone; delete {named} and run again to make them anew")

    def progress(self, generations: int) -> str | None:
        """What a restarted run will do, given the generations it asks for; None for a new one."""
        done = self.finished_generations()
        if done and done[-1] > generations:
            return (f"the run holds generations 0 to {done[-1]}, more than generations={generations} asks for: "
                    "nothing to do")
        if done == list(range(generations + 1)):
            # Named by number: generations=N makes N + 1 of them (0 is trained on human text), and "all 4" for
            # generations=3 read as a miscount.
            span = "generation 0 is" if generations == 0 else f"generations 0 to {generations} are all"
            return f"{span} finished; raise generations= (now {generations}) to extend the run"
        return f"resuming after generation {done[-1]} (finished: {', '.join(map(str, done))})" if done else None

    def lock(self) -> None:
        """One run per directory: a second process would interleave generations."""
        self._lock = os_lock(self.root / ".lock")
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            self._lock = None
            raise TestbedError(f"run_dir={self.root} is in use by another testbed run (or by the processes a killed "
                               "accelerate launch left running); wait for it or choose another run_dir") from None

    def unlock(self) -> None:
        """Released when the run ends, not when the garbage collector gets to it: the same process may run the
        folder again (a lab runs an arm's generation 0 first, then the arm)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def begin(self, g: int) -> Path:
        """A clean working folder for generation g; leftovers of a killed attempt are removed, and so is a
        gen_NNN without its DONE marker: it is not finished, whatever it holds, and would block the rename."""
        part = self.root / f"{gen_name(g)}.partial"
        shutil.rmtree(part, ignore_errors=True)
        if self.gen(g).exists() and not self.finished(g):
            shutil.rmtree(self.gen(g))
        part.mkdir()
        return part

    def changes_barring(self, cfg: Config) -> list[str]:
        """The keys in which cfg differs from this run's saved config and which bar resuming it: none where they
        may change (changed_config), nor where only generation 0 is finished and same_generation_0(saved, cfg)
        says it is cfg's generation 0 too. The run then goes on as cfg, as a lab's arms share a generation 0: a
        mix or curation key corrected after generation 1 stopped keeps the generation 0 already trained."""
        saved_path = self.root / "config.yaml"
        changed = changed_config(saved_path, cfg)
        if changed and self.finished_generations() == [0] and \
                same_generation_0(load_saved(saved_path), cfg):
            return []
        return changed

    def check_same_run(self, cfg: Config, split: dict) -> list[str]:
        """Resume only the same experiment: its config, not the spelling of its folder (a moved or copied run
        resumes too); `generations` may grow, to extend a run, and `track` change. Returns the keys changed that
        do not bar it (changes_barring): the caller saves cfg as the run's config (continue_as)."""
        saved_path = self.root / "config.yaml"
        if not saved_path.exists():
            raise TestbedError(f"run_dir={self.root} exists but is not a testbed run (no config.yaml); choose another run_dir")
        if changed := self.changes_barring(cfg):
            if not self.finished_generations():  # what kill -9 (or the OOM killer) leaves of a new run: nothing to keep
                raise TestbedError(
                    f"run_dir={self.root} holds a run with a different config (changed: {', '.join(changed)}) that never "
                    f"finished a generation (stopped by kill -9 or the out-of-memory killer?): remove the folder "
                    f"(rm -r {self.root}) and run again, or use a new run_dir")
            raise TestbedError(
                f"run_dir={self.root} holds a run with a different config (changed: {', '.join(changed)}); "
                "use a new run_dir, or the saved config to resume")
        saved_split = read_json(self.root / "split.json")
        if saved_split["sha256"] != split["sha256"]:
            raise TestbedError(f"the human corpus changed since run_dir={self.root} was started (split.json checksum "
                               "differs); put back the file it was started on, or start the new corpus in a new run_dir")
        if saved_split != split:
            raise TestbedError(f"run_dir={self.root} was split by another version of testbed (split.json differs); "
                               "start it again in a new run_dir")
        return changed_config(saved_path, cfg)

    def claim(self, cfg: Config, split: dict, new_run: bool, processes: int = 1) -> str | None:
        """Lock the folder for this process and, for a run it resumes, check it again under the lock, whatever the
        first check found: since it, a run of another config may have finished generation 1, or gone on as that
        config and rewritten the saved one. Returns what to tell the user when the run goes on under cfg."""
        self.lock()
        if new_run:
            return None
        renewed = self.check_same_run(cfg, split)
        self.check_processes(processes)
        if renewed:
            self.continue_as(cfg)
        self.record_generations(cfg)
        return (f"run_dir={self.root}: only generation 0 is finished, and it reads none of the changed keys "
                f"({', '.join(renewed)}): the run goes on under this config") if renewed else None

    def check_processes(self, processes: int) -> None:
        """Each process of an accelerate launch trains on train.batch_size blocks a step: the same config over
        another number of processes is another batch and other steps, so a run resumes with the count it began."""
        done = self.finished_generations()
        if not done:
            return
        began = read_json(self.gen(done[-1]) / "train.json").get("environment", {}).get("processes")
        if began is not None and began != processes:
            how = "without accelerate launch" if began == 1 else f"with accelerate launch --num_processes {began}"
            raise TestbedError(
                f"run_dir={self.root} trained on {began} process{'es' * (began != 1)} and this launch has {processes}: "
                f"each trains on train.batch_size blocks a step, so the run would go on with another batch; resume "
                f"it {how}, or start a new run_dir")

    def continue_as(self, cfg: Config) -> None:
        """A run whose generation 0 cfg shares (changes_barring) goes on as cfg: the saved config becomes cfg, with
        the generations, track and run_dir spelling kept as record_generations keeps them."""
        path = self.root / "config.yaml"
        saved = load_saved(path)
        write_text(path, to_yaml(replace(cfg, run_dir=saved.run_dir, track=saved.track,
                                         generations=max(cfg.generations, saved.generations))))

    def record_generations(self, cfg: Config) -> None:
        """An extended run's saved config takes the generations it now runs to, so that a report or a lab counts
        it finished; never fewer, since a shorter rerun keeps every generation it finds. The rest stays as first
        saved: what else may differ (track, the spelling of run_dir) is not the run's identity."""
        path = self.root / "config.yaml"
        saved = load_saved(path)
        if cfg.generations > saved.generations:
            write_text(path, to_yaml(replace(saved, generations=cfg.generations)))

    # A model 0 another run trained (start_from, model_only): generation 0 samples and scores it instead of training.
    FIRST_MODEL = "first_model"
    # A whole generation 0 copied from another run (start_from): its metrics are not yet in this run's trackers.
    UNLOGGED = "generation_0_unlogged"

    def start_from(self, donor: "RunDir", cfg: Config, model_only: bool = False) -> None:
        """A new run under cfg that holds donor's finished generation 0 and the split, tokenizer and human
        reference it was made with; only for a cfg whose generation 0 is donor's (first_generation).
        model_only: only donor's model 0, with its training record and log, for a cfg that trains the same model 0
        (first_generation with NOT_READ_BY_MODEL_0) but samples otherwise; the run writes its own generation 0."""
        donor.verify(0)
        files = {"config.yaml": to_yaml(cfg),
                 **{name: (donor.root / name).read_text(encoding="utf-8") for name in ("split.json", "reference.json")}}
        copies = {"tokenizer": donor.root / "tokenizer"}
        if model_only:
            files.update({f"{self.FIRST_MODEL}/{name}": (donor.gen(0) / name).read_text(encoding="utf-8")
                          for name in ("train.json", "log.txt")})
            copies[f"{self.FIRST_MODEL}/model"] = donor.gen(0) / "model"
        else:
            copies[donor.gen(0).name] = donor.gen(0)
            files[self.UNLOGGED] = ""
        create(self.root, files, {name: (lambda dest, src=src: shutil.copytree(src, dest)) for name, src in copies.items()})

    def first_model(self) -> Path | None:
        """The model 0 another run trained for this one, until generation 0 is finished."""
        path = self.root / self.FIRST_MODEL
        return path if path.is_dir() and not self.finished(0) else None

    def model(self, g: int) -> Path:
        self.verify(g, "model/")
        return self.gen(g) / "model"

    def corpus(self, g: int) -> list[dict]:
        """What model g wrote, one row per document."""
        self.verify(g, "corpus.jsonl")
        return read_jsonl(self.gen(g) / "corpus.jsonl")

    def verify(self, g: int, prefix: str = "") -> None:
        """Stop with one line if a file of finished generation g under `prefix` differs from what DONE recorded."""
        done = self.gen(g) / "DONE"
        try:
            listed = json.loads(done.read_text(encoding="utf-8") or "{}")  # an empty marker: made before checksums
        except (OSError, ValueError):
            listed = None
        if not isinstance(listed, dict):
            raise TestbedError(f"{done}: the marker is damaged; {self._remake(g)}")
        for name, expected in listed.items():
            if name.startswith(prefix):
                path = self.gen(g) / name
                if not path.is_file() or _fingerprint(path) != expected:
                    raise TestbedError(f"{path}: {'missing' if not path.is_file() else 'damaged (size or checksum differs from DONE)'}"
                                       f"; {self._remake(g)}")

    def _remake(self, g: int) -> str:
        """The fix for a damaged generation g: the later ones were made from it, and go with it."""
        later = [self.gen(k).name for k in self.finished_generations() if k > g]
        if not later:
            return f"delete {self.gen(g)} to make generation {g} again"
        named = ", ".join(later) if len(later) <= 3 else f"{later[0]} to {later[-1]}"
        return f"delete {self.gen(g)} and the generations made after it ({named}) to make them again from generation {g}"

    @staticmethod
    def log(part: Path):
        """A function that appends a line to the generation's log.txt."""
        def log(line: str) -> None:
            with open(part / "log.txt", "a", encoding="utf-8") as f:
                f.write(line + "\n")
        return log

    @staticmethod
    def save(part: Path, documents: list[dict], **records) -> None:
        """A generation's artifacts: the documents model g wrote as corpus.jsonl, and each record as
        NAME.json (corpus, train, curation, metrics)."""
        write_jsonl(part / "corpus.jsonl", documents)
        for name, record in records.items():
            write_json(part / f"{name}.json", record)

    def finish(self, g: int, part: Path) -> Path:
        # The marker lists every file with its size and checksum: what a later run, eval or compare reads
        # of this generation is checked against it, so a damaged file is caught rather than used.
        write_json(part / "DONE", {str(p.relative_to(part)): _fingerprint(p) for p in sorted(part.rglob("*"))
                                   if p.is_file() and p.name != "DONE"})
        os.replace(part, self.gen(g))
        if g == 0:
            shutil.rmtree(self.root / self.FIRST_MODEL, ignore_errors=True)  # a copy of gen_000/model now
        self.rebuild_metrics()
        return self.gen(g)

    def rebuild_metrics(self) -> None:
        rows = []
        for g in self.finished_generations():
            self.verify(g, "metrics.json")
            rows.append(read_json(self.gen(g) / "metrics.json"))
        write_jsonl(self.root / "metrics.jsonl", rows)


def _fingerprint(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def create(root: Path, files: dict[str, str], dirs: dict[str, callable]) -> None:
    """Make a new run directory whole or not at all: built beside it, then renamed into place.

    files: name -> text; dirs: name -> function that fills the given folder.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")
        for name, fill in dirs.items():
            fill(tmp / name)
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, root)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOTEMPTY, errno.EEXIST) and root.is_dir():
            # Two commands started together on one new folder: the other made it first, while this one read the
            # corpus and trained its tokenizer. Said as what it is, not as a disk error on the temporary folder.
            raise TestbedError(f"run_dir={root} is in use by another testbed run, started at the same time, which "
                               "made it first; wait for it or choose another run_dir") from None
        raise


def check_can_hold(run_dir: str) -> None:
    """Before any work: a run_dir under a file could never be made, and would fail only after the tokenizer."""
    for parent in Path(run_dir).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise TestbedError(f"run_dir={run_dir}: {parent} is a file, so no folder can be made under it; "
                                   "choose another run_dir")
            if not (Path(run_dir).exists() or os.access(parent, os.W_OK | os.X_OK)):  # a read-only disk, too
                raise TestbedError(f"run_dir={run_dir}: {parent} cannot be written to, so the run's folder cannot be "
                                   "made there; choose a folder you can write to, or fix its permissions")
            return


# What to do about an OS failure, by its error number.
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then run the same command again (finished generations are kept)",
    errno.EDQUOT: "the disk quota is used up: free space, then run the same command again (finished generations are kept)",
    errno.EFBIG: "a file went over the file-size limit (ulimit -f): raise it, then run the same command again",
    errno.EACCES: "no permission: choose a folder you can write to (run_dir=, --out) or fix its permissions",
    errno.EPERM: "no permission: choose a folder you can write to (run_dir=, --out) or fix its permissions",
    errno.EROFS: "a read-only file system: choose a folder on a writable disk (run_dir=, --out)",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EEXIST: "a file of this name is in the way (a file where a folder is needed?): choose another path",
    errno.EISDIR: "this is a folder where a file is expected: give the path of a file",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def os_failure(e: OSError) -> str:
    """One line for an error from the OS: the file (when the OS names one), what happened, what to do."""
    # A file half-written beside its place (.NAME.<random>.tmp, see create and report.page.build) is named by the place
    # the user gave, not by the temporary name they never chose.
    filename = None if e.filename is None else re.sub(r"(^|/)\.([^/]+)\.[A-Za-z0-9_]{6,}\.tmp(?=/|$)", r"\1\2", str(e.filename))
    name = f"{filename}: " if filename is not None else ""
    what = e.strerror or first_line(e)
    hint = OS_HINTS.get(e.errno, "check the path, the disk and the permissions, then run the same command again")
    return f"{name}{what}; {hint}"
