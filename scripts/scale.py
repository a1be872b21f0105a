"""How the loop's cost grows with the work: time and peak memory per stage against corpus and sample size.

Runs testbed's loop (testbed.loop.run) with a fixed small model on storyworld
corpora of 1x, 4x and 16x a base size (data.docs, generation 0 only), then on
synthetic corpora of 1x, 4x and 16x a base sample size (sample.size, reporting
generation 1, which mixes, trains on, samples and scores a corpus of that
size). Training is train.compute=epochs, one pass, so its work grows with the
data; the metrics suite scores fixed-size samples (eval.sample_words), so it is
meant to stay nearly constant. Each size runs in its own process, so its peak
memory is its own. For every stage it prints seconds and peak RSS per size and
the fitted exponent, the slope of log(seconds) against log(size) (1: linear;
the goal of issue 16 is at most 1.1; a fixed cost pulls it below 1), and the
same slope for the memory above the process's baseline.

    python scripts/scale.py                  # ~5 min on 2 idle cores
    python scripts/scale.py --base 1000 --sample-base 400

--corpus-only runs the loop's data path alone, at a full-TinyStories size: it
writes --docs storyworld stories to a .jsonl file in a temporary folder, then
loads it as data.source=local does (streamed through datasets), splits it,
trains the word tokenizer, encodes the training split into the human
documents, builds the metrics' human statistics and packs the documents into
blocks, in the loop's order. It prints seconds and peak RSS per step, and
what the token ids, the blocks and the texts take against the peak.

    python scripts/scale.py --corpus-only --docs 2000000
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The testbed next to this script, whether or not it is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 1.1
MARK = "SCALE_RESULT "
# The loop's stage functions, timed where testbed.loop calls them.
STAGES = ["_start", "_mix", "_train", "_sample", "evaluate", "_commit"]
NAMES = {"_start": "setup", "_mix": "mix", "_train": "train", "_sample": "sample", "evaluate": "evaluate",
         "_commit": "commit"}
SETUP_NOTE = "setup: storyworld corpus, tokenizer, encoding, metrics' human statistics and reference"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=int, default=250, help="data.docs of the smallest corpus")
    p.add_argument("--sample-base", type=int, default=100, help="sample.size of the smallest synthetic corpus")
    p.add_argument("--factors", default="1,4,16", help="sizes, as multiples of the base")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--inline", action="store_true", help="run every size in this process (memory figures then "
                   "carry over from size to size)")
    p.add_argument("--corpus-only", action="store_true", help="time the data path alone (see above)")
    p.add_argument("--docs", type=int, default=2_000_000, help="stories, with --corpus-only")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def overrides(args, sweep: str, size: int, run_dir: str) -> list[str]:
    docs = size if sweep == "corpus" else args.base
    samples = size if sweep == "sample" else args.sample_base
    return [f"run_dir={run_dir}", "generations=" + ("0" if sweep == "corpus" else "1"),
            "data.source=storyworld", f"data.docs={docs}", f"data.heldout_docs={max(10, args.base // 10)}",
            "tokenizer.vocab_size=512", "model.preset=nano", "model.context=64",
            "train.compute=epochs", "train.epochs=1", "train.batch_size=16",
            f"sample.size={samples}", "sample.batch_size=64", "mix.keep_unfinished=true",
            "eval.sample_words=2000", "eval.truth_docs=50", "eval.confidence_docs=50", "eval.self_bleu_pairs=100"]


# ----------------------------------------------------------------------------- one size, in a worker

class Peak:
    """Peak RSS of this process while a block runs, polled from a thread every 10 ms."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        self.peak, self._stop = self.proc.memory_info().rss, threading.Event()

        def poll():
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, self.proc.memory_info().rss)
        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def measure(args, sweep: str, size: int) -> dict:
    """Run the loop once; {stage: [seconds, peak RSS bytes]} of the generation the sweep reports."""
    import psutil
    import torch
    import transformers
    from accelerate.state import AcceleratorState

    import testbed.loop as loop
    from testbed.config import load_config

    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    proc = psutil.Process()
    report = 0 if sweep == "corpus" else 1
    times: dict[str, list] = {}
    current = {"g": 0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            if name in ("_mix", "_train", "_sample", "_commit"):
                current["g"] = a[0]
            start = time.perf_counter()
            with Peak(proc) as peak:
                out = fn(*a, **kw)
            if name == "_start" or current["g"] == report:
                seconds, rss = times.get(name, (0.0, 0))
                times[name] = [seconds + time.perf_counter() - start, max(rss, peak.peak)]
            return out
        return wrapper

    saved = {name: getattr(loop, name) for name in STAGES if name != "evaluate"}
    evaluate = loop.Evaluator.evaluate
    for name, fn in saved.items():
        setattr(loop, name, timed(name, fn))
    loop.Evaluator.evaluate = timed("evaluate", evaluate)
    baseline = proc.memory_info().rss
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, overrides(args, sweep, size, str(Path(tmp) / "run")))
            start = time.perf_counter()
            loop.run(cfg, say=lambda *a, **k: None)
            total = time.perf_counter() - start
    finally:
        for name, fn in saved.items():
            setattr(loop, name, fn)
        loop.Evaluator.evaluate = evaluate
        # The loop's Accelerator sets process-wide state; the next size starts clean.
        AcceleratorState._reset_state(reset_partial_state=True)
    return {"stages": times, "baseline": baseline, "total": total}


def run_size(args, sweep: str, size: int) -> dict:
    if args.inline:
        return measure(args, sweep, size)
    cmd = [sys.executable, __file__, "--worker", sweep, "--size", str(size), "--base", str(args.base),
           "--sample-base", str(args.sample_base)] + (["--threads", str(args.threads)] if args.threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode or not lines:
        raise SystemExit(f"scale.py: the {sweep} run of size {size} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


# ----------------------------------------------------------------------------- the data path alone

DATA_STEPS = ["load", "split", "tokenizer", "encode", "stats", "pack"]


def write_stories(path: Path, n: int, seed: int = 0, chunk: int = 50_000) -> None:
    """n storyworld stories as JSON lines, written a chunk at a time so the writer holds no corpus."""
    from testbed.corpus.storyworld import StoryWorld

    world = StoryWorld()
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, chunk):
            f.writelines(json.dumps({"text": t}) + "\n" for t in world.sample(min(chunk, n - start), seed + start))


def corpus_only(args) -> dict:
    """The loop's data path on a .jsonl corpus of args.docs stories: {step: [seconds, peak RSS]} and sizes."""
    import psutil

    from testbed.config import load_config
    from testbed.corpus.sources import load_documents, source_name
    from testbed.corpus.split import split_documents
    from testbed.metrics.suite import Evaluator
    from testbed.mix import documents
    from testbed.seeds import stage_seed
    from testbed.tokenizer import train_tokenizer
    from testbed.train import pack

    proc = psutil.Process()
    steps: dict[str, list] = {}

    def step(name, fn, *a, **kw):
        start = time.perf_counter()
        with Peak(proc) as peak:
            out = fn(*a, **kw)
        steps[name] = [time.perf_counter() - start, peak.peak]
        return out

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stories.jsonl"
        start = time.perf_counter()
        write_stories(path, args.docs)
        written = time.perf_counter() - start
        # The quickstart's tokenizer and context: one token per word, so storyworld's ids fit in 16 bits.
        cfg = load_config(None, ["data.source=local", f"data.path={path}", f"data.heldout_docs={min(400, args.docs // 10)}",
                                 "tokenizer.kind=word", "tokenizer.vocab_size=2048", "model.context=256"])
        baseline = proc.memory_info().rss
        # As testbed.corpus.human.human_corpus, step by step.
        docs = step("load", load_documents, cfg.data, stage_seed(cfg.seed, 0, "corpus"))
        split = step("split", split_documents, docs, cfg.data.heldout_docs, stage_seed(cfg.seed, 0, "split"),
                     source_name(cfg.data))
        train, heldout = [docs[i] for i in split["train"]], [docs[i] for i in split["heldout"]]
        del docs
        tokenizer = step("tokenizer", train_tokenizer, train, cfg.tokenizer.vocab_size, cfg.tokenizer.kind)
        human = step("encode", documents, tokenizer, train)
        # Held while packing, as the loop holds it.
        evaluator = step("stats", Evaluator, cfg, tokenizer, train, heldout, train_ids=[d.ids for d in human])
        blocks = step("pack", pack, [d.ids for d in human], tokenizer.eos_token_id, cfg.model.context, 0)
        del evaluator
        sizes = {"file": path.stat().st_size, "written": written, "baseline": baseline,
                 "tokens": sum(len(d.ids) for d in human), "ids": token_bytes(human), "blocks": blocks.nbytes,
                 "blocks_dtype": str(blocks.dtype).removeprefix("torch."), "texts": sum(map(sys.getsizeof, train)),
                 "docs": len(train), "peak": max(rss for _, rss in steps.values()),
                 "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}
    return {"steps": steps, **sizes}


def token_bytes(human) -> int:
    """Bytes of the human documents' token ids, with the int64 offsets that cut them into documents."""
    return sum(d.ids.nbytes for d in human) + 8 * (len(human) + 1)


def print_corpus_only(args, r: dict) -> None:
    mib = 2 ** 20
    print(f"\ndata path alone: {args.docs:,} storyworld stories ({r['file'] / mib:,.0f} MiB of .jsonl, written in "
          f"{r['written']:.0f}s), data.source=local (streamed), word tokenizer, context 256; {r['docs']:,} training "
          f"documents, {r['tokens']:,} tokens; load average {r['load_average']:.1f} at the end")
    print(f"  {'step':<10}{'seconds':>10}{'peak RSS':>14}")
    for name in DATA_STEPS:
        seconds, rss = r["steps"][name]
        print(f"  {name:<10}{seconds:>9.1f}s{rss / mib:>10,.0f} MiB")
    print(f"  token ids {r['ids'] / mib:,.0f} MiB, blocks {r['blocks'] / mib:,.0f} MiB ({r['blocks_dtype']}), "
          f"texts {r['texts'] / mib:,.0f} MiB (the training split's str objects); peak RSS {r['peak'] / mib:,.0f} MiB, "
          f"{r['baseline'] / mib:,.0f} MiB before loading")


# ----------------------------------------------------------------------------- the table

def slope(sizes: list[float], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(size); None when a value is not positive."""
    if len(sizes) < 2 or min(values) <= 0:
        return None
    xs, ys = [math.log(s) for s in sizes], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def table(title: str, unit: str, sizes: list[int], results: list[dict], stages: list[str]) -> dict:
    """Print one sweep; returns {stage: time exponent}."""
    print(f"\n{title}")
    cols = [f"{s:,} {unit}" for s in sizes]
    print(f"  {'stage':<9}" + "".join(f"{c:>22}" for c in cols) + f"{'time exp':>10}{'mem exp':>9}  goal <= {GOAL}")
    exponents = {}
    for stage in stages:
        if not all(stage in r["stages"] for r in results):
            continue
        seconds = [r["stages"][stage][0] for r in results]
        rss = [r["stages"][stage][1] for r in results]
        above = [max(m - r["baseline"], 0) for m, r in zip(rss, results)]
        t_exp, m_exp = slope(sizes, seconds), slope(sizes, above)
        exponents[NAMES[stage]] = t_exp
        cells = "".join(f"{f'{t:8.2f}s {m / 2**20:7,.0f} MiB':>22}" for t, m in zip(seconds, rss))
        verdict = "n/a" if t_exp is None else "met" if t_exp <= GOAL else "NOT MET"
        print(f"  {NAMES[stage]:<9}{cells}{fmt(t_exp):>10}{fmt(m_exp):>9}  {verdict}")
    totals = [r["total"] for r in results]
    print(f"  {'loop':<9}" + "".join(f"{f'{t:8.2f}s':>22}" for t in totals) + f"{fmt(slope(sizes, totals)):>10}")
    return exponents


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        print(MARK + json.dumps(measure(args, args.worker, args.size)))
        return {}
    import torch

    if args.corpus_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        result = corpus_only(args)
        print_corpus_only(args, result)
        return result
    factors = [int(f) for f in args.factors.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = args.threads or torch.get_num_threads()
    print(f"scale: model nano (context 64), vocab 512, train.compute=epochs x1, storyworld; "
          f"cpu {threads} threads of {os.cpu_count()} cores, load average {load:.1f} at the start; "
          f"{'one process' if args.inline else 'one process per size'}")
    print(f"times: seconds in the stage; memory: peak RSS during the stage; exponents: log-log slopes "
          f"(time; memory above the process's baseline). {SETUP_NOTE}")
    corpus_sizes = [args.base * f for f in factors]
    corpus = [run_size(args, "corpus", n) for n in corpus_sizes]
    corpus_exp = table("corpus size (data.docs; setup and generation 0)", "docs", corpus_sizes, corpus, STAGES)
    sample_sizes = [args.sample_base * f for f in factors]
    sample = [run_size(args, "sample", n) for n in sample_sizes]
    # Setup depends on the human corpus only, the same here at every size.
    sample_exp = table(f"sample size (sample.size; generation 1, data.docs={args.base})", "samples", sample_sizes,
                       sample, STAGES[1:])
    return {"corpus": corpus_exp, "sample": sample_exp}


if __name__ == "__main__":
    main()
