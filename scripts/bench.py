"""Throughput of testbed's training loop and sampler, next to the transformers baselines.

For one model on one machine, in one process, this prints:

    training   testbed.train.train           vs  transformers.Trainer
    sampling   testbed.sample.sample_corpus  vs  model.generate (its defaults, i.e. top_k=50)
    sampling   testbed.sample.sample_corpus  vs  model.generate(top_k=0) (pure sampling, as ours)

as tokens/s and the ratio testbed/baseline (> 1: testbed is faster), and then
the seconds the whole metrics suite (testbed.metrics.suite.Evaluator.evaluate)
takes on a ~1M-token corpus on one CPU thread, which has no baseline. Ratios are
the deliverable: absolute numbers move with the machine, the ratios much less.
There are no pass/fail thresholds. Both sides of a ratio use the same model
config and initial weights, the same blocks, batch size and token count, and
are timed once each, after a short warm-up, in this one process. The corpus is
--data FILE if given, else testbed's storyworld if importable, else random
pseudo-words: nothing is downloaded.

    python scripts/bench.py                           # tiny model, synthetic corpus, ~1-2 min on 2 CPU cores
    python scripts/bench.py --preset small --device cuda
    python scripts/bench.py --data ../shared/data/tinystories-sample.txt
"""
import argparse
import math
import os
import random
import tempfile
import threading
import time
from contextlib import nullcontext

import accelerate
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import Dataset
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from testbed.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from testbed.model import build_model, n_params, resolve
from testbed.sample import max_new_tokens, sample_corpus
from testbed.tokenizer import encode, train_tokenizer
from testbed.train import pack, train

SEED = 1234


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=["nano", "tiny", "small", "medium", "large"])
    p.add_argument("--context", type=int, default=None, help="override the preset's context length")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--train-tokens", type=int, default=200_000, help="tokens each trainer sees")
    p.add_argument("--batch-size", type=int, default=16, help="training blocks per step")
    p.add_argument("--sample-docs", type=int, default=256, help="documents each sampler writes")
    p.add_argument("--sample-batch-size", type=int, default=128)
    p.add_argument("--docs", type=int, default=2000, help="synthetic corpus size, in documents")
    p.add_argument("--data", default=None, help="a local .txt (blank-line separated) / .jsonl / .parquet corpus")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--suite-tokens", type=int, default=1_000_000, help="size of the corpus the metrics suite scores")
    p.add_argument("--suite-words", type=int, default=100_000, help="eval.sample_words for the suite")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- corpus

def random_word_docs(n_docs: int, seed: int) -> list[str]:
    """Sentences of Zipf-distributed pseudo-words: enough structure for a tiny
    model to learn where documents end, so sampled documents stop on their own."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    lexicon = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(800)})
    weights = [1 / (rank + 1) for rank in range(len(lexicon))]
    docs = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = rng.choices(lexicon, weights, k=rng.randint(4, 10))
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(" ".join(sentences))
    return docs


def more_texts(kind: str, n_docs: int, seed: int) -> list[str]:
    """More documents from the generator behind the benchmark corpus: storyworld or random words."""
    if kind == "storyworld":
        from testbed.corpus.storyworld import StoryWorld

        return StoryWorld().sample(n_docs, seed)
    return random_word_docs(n_docs, seed)


def load_texts(args) -> tuple[list[str], str]:
    if args.data:
        from testbed.corpus.sources import load_documents

        docs = load_documents(DataConfig(source="local", path=args.data, separator="paragraph"), SEED)
        return docs, f"local:{os.path.basename(args.data)}"
    # storyworld is being written alongside this script; a missing or half-written
    # module must not stop the benchmark, whose ratios do not depend on the text.
    try:
        from testbed.corpus.storyworld import StoryWorld

        return StoryWorld().sample(args.docs, SEED), "storyworld"
    except Exception as e:  # noqa: BLE001
        why = "not installed" if isinstance(e, ModuleNotFoundError) else f"{type(e).__name__}: {e}"
        return random_word_docs(args.docs, SEED), f"random words (storyworld {why})"


# ----------------------------------------------------------------------------- measuring

class Watch:
    """What else happened while a block ran: peak memory (allocated CUDA memory
    on a GPU, process RSS polled from a thread on a CPU, since getrusage's
    maxrss never goes down and so cannot separate two measurements), and the
    CPU time other processes took meanwhile: a one-shot timing on a shared CPU
    is only as good as the machine was quiet."""

    def __init__(self, device: str):
        self.device, self.peak, self.others = device, None, None

    def __enter__(self):
        sync(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._start_rss_poll()
        self._busy, self._own = system_busy_seconds(), own_cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = time.perf_counter() - self._start
        busy = system_busy_seconds()
        if busy is not None and self._busy is not None:
            self.others = max(0.0, (busy - self._busy) - (own_cpu_seconds() - self._own)) / self.seconds
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
        elif self.peak is not None:
            self._stop.set()
            self._thread.join()

    def _start_rss_poll(self):
        try:
            import psutil
        except ImportError:
            return
        proc, self._stop = psutil.Process(), threading.Event()
        self.peak = proc.memory_info().rss

        def poll():
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, proc.memory_info().rss)
        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def __str__(self):
        label = "peak alloc" if self.device == "cuda" else "peak RSS"
        memory = f"{label} {self.peak / 2**20:,.0f} MiB" if self.peak is not None else f"{label} n/a"
        others = f"other processes {self.others:.2f} CPUs" if self.others is not None else "other processes n/a"
        return f"{memory}, {others}"


def system_busy_seconds() -> float | None:
    """CPU seconds spent by everything on the machine (Linux /proc/stat), steal included."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def mean_loss(model, blocks: torch.Tensor, device: str, autocast) -> float:
    """Loss on a fixed set of blocks: the two trainers should land close, which
    shows they did the same work, not just the same number of steps."""
    model.eval()
    with autocast():
        return model(input_ids=blocks.to(device), labels=blocks.to(device)).loss.item()


# ----------------------------------------------------------------------------- training

class BlockDataset(Dataset):
    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


class StepTimer(TrainerCallback):
    """Times Trainer's step loop only, as testbed's train() times its own: from
    after the dataloader/optimizer/scheduler setup to the last step."""

    def __init__(self, device: str):
        self.device, self.seconds = device, None

    def on_train_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.seconds = time.perf_counter() - self._start


def run_testbed_train(model, blocks, cfg: TrainConfig, accelerator, device):
    with Watch(device) as watch:
        result = train(model, blocks, cfg, accelerator, SEED, desc="bench: testbed train")
    # torch.optim.AdamW's default implementation: foreach on CUDA, a per-tensor loop on CPU.
    result["optimizer"] = "AdamW foreach" if device == "cuda" else "AdamW for-loop"
    return result, watch


def run_trainer(model, blocks, cfg: TrainConfig, steps: int, device: str, precision: str, out_dir: str):
    # Everything Trainer would do beyond training (evaluation, checkpoints,
    # loggers, progress bars, worker processes) is switched off; the
    # optimizer is left at Trainer's default (fused AdamW on torch >= 2.8).
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        adam_beta1=0.9,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio},
        warmup_steps=int(cfg.warmup * steps),
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        seed=SEED,
    )
    timer = StepTimer(device)
    trainer = Trainer(model=model, args=args, train_dataset=BlockDataset(blocks), callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics dict even with logging off
    with Watch(device) as watch:
        trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrap accelerate's wrapper
    name = type(optimizer).__name__ + (" fused" if optimizer.defaults.get("fused") else "")
    return {"model": trainer.model, "seconds": timer.seconds, "optimizer": name}, watch


# ----------------------------------------------------------------------------- sampling

def generated_tokens(rows: torch.Tensor, eos_id: int) -> int:
    """Tokens up to and including the first EOS, or the whole row: the count
    testbed uses (len(sample.tokens) + sample.ended)."""
    is_eos = rows == eos_id
    ended = is_eos.any(1)
    first = is_eos.int().argmax(1)
    return int(torch.where(ended, first + 1, torch.full_like(first, rows.shape[1])).sum())


def run_sample_corpus(model, n_docs, batch, eos_id, autocast, device):
    cfg = SampleConfig(size=n_docs, unit="docs", batch_size=batch, temperature=1.0, top_k=0, top_p=1.0)
    with Watch(device) as watch:
        samples = sample_corpus(model, cfg, eos_id, SEED, autocast=autocast, desc="bench: sample_corpus")
    tokens = sum(len(s.tokens) + s.ended for s in samples)
    ended = sum(s.ended for s in samples)
    return {"tokens": tokens, "seconds": watch.seconds, "ended": ended / n_docs, "docs": n_docs}, watch


def run_generate(model, n_docs, batch, eos_id, max_new, autocast, device, **overrides):
    """model.generate as a user would call it, in the batches sample_corpus uses."""
    model.eval()
    torch.manual_seed(SEED)
    tokens = ended = 0
    with Watch(device) as watch:
        for first in range(0, n_docs, batch):
            n = min(batch, n_docs - first)
            prompts = torch.full((n, 1), eos_id, dtype=torch.long, device=device)
            with torch.no_grad(), autocast():
                out = model.generate(input_ids=prompts, do_sample=True, max_new_tokens=max_new,
                                     pad_token_id=eos_id, eos_token_id=eos_id, **overrides)
            rows = out[:, prompts.shape[1]:]
            tokens += generated_tokens(rows, eos_id)
            ended += int((rows == eos_id).any(1).sum())
    return {"tokens": tokens, "seconds": watch.seconds, "ended": ended / n_docs, "docs": n_docs}, watch


# ----------------------------------------------------------------------------- metrics suite

def run_suite(model, tokenizer, texts, source, args, device, autocast):
    """Evaluator.evaluate on a ~args.suite_tokens corpus, as the loop calls it after each generation.

    The corpus stands in for a synthetic one: more documents of the benchmark's
    own kind, scored by the model trained above. Building the Evaluator and the
    human reference happen once per run, so they are timed apart.
    """
    from testbed.config import load_config
    from testbed.metrics.suite import Evaluator
    from testbed.sample import Sample

    per_doc = sum(map(len, encode(tokenizer, texts[:200]))) / min(200, len(texts))
    n_docs = math.ceil(args.suite_tokens / per_doc)
    kind = source if source == "storyworld" else "random" if source.startswith("random") else None
    if kind:
        corpus, heldout = more_texts(kind, n_docs, SEED + 2), more_texts(kind, 400, SEED + 1)
    else:  # a local file: repeated up to the size, its last documents standing in for held-out text
        corpus, heldout = (texts * math.ceil(n_docs / len(texts)))[:n_docs], texts[-400:]
    ids = encode(tokenizer, corpus)
    samples = [Sample([tokenizer.eos_token_id], d, True) for d in ids]
    cfg = load_config(None, [f"data.source={'storyworld' if source == 'storyworld' else 'local'}", "data.path=bench",
                             f"eval.sample_words={args.suite_words}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        ev = Evaluator(cfg, tokenizer, texts, heldout, autocast=autocast if device == "cuda" else None)
        ev.reference(SEED)
        setup = time.perf_counter() - start
        with Watch(device) as watch:
            row = ev.evaluate(model, corpus, samples, SEED, gen0_texts=corpus)
    finally:
        torch.set_num_threads(threads)
    return {"seconds": watch.seconds, "setup": setup, "tokens": sum(map(len, ids)), "docs": len(corpus),
            "keys": len(row)}, watch


# ----------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    args = parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    precision = args.mixed_precision
    if precision == "auto":  # as testbed's loop resolves it
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "no"

    # --- data and model: built once, outside every timed region
    texts, source = load_texts(args)
    tokenizer = train_tokenizer(texts, args.vocab)
    eos = tokenizer.eos_token_id
    docs = encode(tokenizer, texts)
    model_cfg = ModelConfig(preset=args.preset, context=args.context)
    dims = resolve(model_cfg)
    blocks = pack(docs, eos, dims["context"], SEED)
    vocab = len(tokenizer)

    def fresh_model():
        set_seed(SEED)  # the same initial weights for both trainers
        return build_model(model_cfg, vocab, eos)

    cfg = TrainConfig(tokens=args.train_tokens, batch_size=args.batch_size, mixed_precision=precision)
    per_step = cfg.batch_size * cfg.grad_accum * dims["context"]
    steps = max(1, math.ceil(cfg.tokens / per_step))
    train_tokens = steps * per_step
    accelerator = Accelerator(mixed_precision=precision, cpu=device == "cpu")
    autocast = accelerator.autocast if precision != "no" else nullcontext

    if device == "cuda":
        machine = f"cuda ({torch.cuda.get_device_name()})"
    else:
        machine = f"cpu ({torch.get_num_threads()} threads)"
    print(f"machine: {machine}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"accelerate {accelerate.__version__}, precision {precision}")
    print(f"model: {args.preset} {n_params(fresh_model()) / 1e6:.2f}M params ({dims['n_layer']} layers, "
          f"{dims['n_embd']} wide), context {dims['context']}, vocab {vocab}")
    print(f"corpus: {source}, {len(docs):,} docs, {sum(map(len, docs)):,} tokens, {len(blocks):,} blocks")
    print(f"training: {train_tokens:,} tokens each ({steps} steps x {cfg.batch_size} x {dims['context']}), "
          f"lr {cfg.lr:g} warmup {cfg.warmup:g} + cosine to {cfg.min_lr_ratio:g}x, wd {cfg.weight_decay:g}, clip 1.0")

    # --- training. A few steps of each first, on throwaway models, so neither
    # pays for first-call allocations, kernel selection or lazy imports.
    warm_cfg = TrainConfig(tokens=3 * per_step, batch_size=cfg.batch_size, mixed_precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        train(fresh_model(), blocks, warm_cfg, accelerator, SEED, desc="bench: warm-up")
        run_trainer(fresh_model(), blocks, warm_cfg, 3, device, precision, tmp)
        base, base_watch = run_trainer(fresh_model(), blocks, cfg, steps, device, precision, tmp)
    ours, ours_watch = run_testbed_train(fresh_model(), blocks, cfg, accelerator, device)
    model = ours["model"]
    probe = blocks[: min(64, len(blocks))]
    ours_loss = mean_loss(model, probe, device, autocast)
    base_loss = mean_loss(base["model"], probe, device, autocast)
    train_ours, train_base = train_tokens / ours["seconds"], train_tokens / base["seconds"]
    for name, r, loss, watch in [("testbed train()", ours, ours_loss, ours_watch),
                                 ("Trainer", base, base_loss, base_watch)]:
        print(f"  {name:<28} {train_tokens / r['seconds']:>9,.0f} tok/s  {r['seconds']:6.1f}s  "
              f"{r['optimizer']}, loss {loss:.3f}  {watch}")
    del base

    # --- sampling, with the model just trained by testbed: an untrained model
    # almost never emits EOS, so every document would run to max_new_tokens and
    # the early-exit paths of both samplers would go unmeasured.
    context = dims["context"]
    max_new = max_new_tokens(SampleConfig(), context)
    default_top_k = model.generation_config.top_k
    default_top_k = 50 if default_top_k is None else default_top_k  # generate()'s built-in default when unset
    n, b = args.sample_docs, args.sample_batch_size
    print(f"sampling: {n} docs each from an EOS prompt, batches of {b}, max_new_tokens {max_new}, temperature 1; "
          f"testbed samples with top_k=0 top_p=1 (pure); a plain generate() call applies top_k={default_top_k}")
    warm = min(8, n)
    run_sample_corpus(model, warm, warm, eos, autocast, device)
    run_generate(model, warm, warm, eos, max_new, autocast, device)
    ours_s, ours_s_watch = run_sample_corpus(model, n, b, eos, autocast, device)
    gen_default, gen_default_watch = run_generate(model, n, b, eos, max_new, autocast, device)
    gen_pure, gen_pure_watch = run_generate(model, n, b, eos, max_new, autocast, device, top_k=0)
    rows = [("testbed sample_corpus", ours_s, ours_s_watch),
            (f"generate(default, top_k={default_top_k})", gen_default, gen_default_watch),
            ("generate(top_k=0)", gen_pure, gen_pure_watch)]
    # The same model and token count rule, so tokens/doc and the share ended
    # should agree between testbed and generate(top_k=0): a check that both did the same work.
    for name, r, watch in rows:
        print(f"  {name:<28} {r['tokens'] / r['seconds']:>9,.0f} tok/s  {r['seconds']:6.1f}s  "
              f"{r['tokens']:,} tokens, {r['tokens'] / r['docs']:.1f}/doc, {r['ended']:.0%} ended  {watch}")
    watches = [ours_watch, base_watch, ours_s_watch, gen_default_watch, gen_pure_watch]

    # --- the deliverable
    sample_ours = ours_s["tokens"] / ours_s["seconds"]
    ratios = [
        ("training", train_ours, "Trainer", train_base),
        ("sampling", sample_ours, f"generate(default, top_k={default_top_k})",
         gen_default["tokens"] / gen_default["seconds"]),
        ("sampling", sample_ours, "generate(top_k=0)", gen_pure["tokens"] / gen_pure["seconds"]),
    ]
    print("ratio = testbed / baseline tok/s (> 1: testbed faster); one measurement each, after a warm-up")
    busiest = max((w.others or 0.0) for w in watches)
    if device == "cpu" and busiest > 0.25:
        # One-shot timings on a shared CPU swing with whatever else runs; say so
        # rather than let a contended run pass for a measurement.
        print(f"warning: other processes used up to {busiest:.2f} of the {os.cpu_count()} CPUs during a "
              f"measurement; these ratios are unreliable, rerun on an idle machine")
    width = max(len(r[2]) for r in ratios)
    for what, ours_tps, base_name, base_tps in ratios:
        print(f"{what:<9}  testbed {ours_tps:>9,.0f} tok/s   {base_name:<{width}} {base_tps:>9,.0f} tok/s   "
              f"ratio {ours_tps / base_tps:.2f}x")

    # --- the metrics suite: seconds, not a ratio (nothing else computes the same row)
    suite, suite_watch = run_suite(model, tokenizer, texts, source, args, device, autocast)
    print(f"suite      testbed {suite['seconds']:>9.1f} s      Evaluator.evaluate on {suite['tokens']:,} tokens "
          f"({suite['docs']:,} docs, {suite['keys']} keys, eval.sample_words {args.suite_words:,}), 1 CPU thread; "
          f"setup and human reference {suite['setup']:.1f}s once per run  {suite_watch}")
    return {"training": train_ours / train_base,
            "sampling_default": ratios[1][1] / ratios[1][3],
            "sampling_top_k0": ratios[2][1] / ratios[2][3],
            "suite_seconds": suite["seconds"]}


if __name__ == "__main__":
    main()
