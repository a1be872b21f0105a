"""The generation loop: train, sample, evaluate; then mix, train, sample, evaluate...

Generation g's folder holds model g, the corpus model g wrote, and model g's
metrics. Generation g+1 trains on a mix drawn from that corpus (and, by
regime, earlier ones and human text). Every stage takes its seed from
(run seed, generation, stage), so a run resumed after a kill computes exactly
what an uninterrupted run would have.
"""
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, is_tensorboard_available, is_wandb_available, set_seed

from testbed import TestbedError
from testbed.config import Config, diff, load_config, to_dict, to_yaml
from testbed.corpus.sources import load_documents, source_name
from testbed.corpus.fresh import check_reserve, fresh_texts
from testbed.corpus.split import split_documents
from testbed.curate.watermark import make_processor
from testbed.metrics.suite import Evaluator, numbers
from testbed.curate.curator import Curator, summary as curation_summary
from testbed.mix import HUMAN, Doc, composition, synthetic_label, training_set
from testbed.model import build_model, load_model, n_params, resolve, save_model
from testbed.rundir import RunDir, create, read_json, read_jsonl, write_json, write_jsonl
from testbed.sample import max_new_tokens, sample_corpus
from testbed.seeds import stage_seed
from testbed.tokenizer import encode, load_tokenizer, train_tokenizer
from testbed.train import pack, train


def run(cfg: Config, say=print) -> list[dict]:
    """Run (or resume) the experiment described by cfg; returns the metrics rows."""
    _check_trackers(cfg.track)
    rundir = RunDir(cfg.run_dir)
    accelerator = Accelerator(mixed_precision=_precision(cfg.train.mixed_precision), gradient_accumulation_steps=cfg.train.grad_accum,
                              log_with=cfg.track or None, project_dir=str(rundir.root / "tracking"))
    main = accelerator.is_main_process
    say = say if main else (lambda *a, **k: None)

    docs = load_documents(cfg.data, stage_seed(cfg.seed, 0, "corpus"))
    split = split_documents(docs, cfg.data.heldout_docs, stage_seed(cfg.seed, 0, "split"), source_name(cfg.data),
                            cfg.data.fresh_docs)
    train_texts = [docs[i] for i in split["train"]]
    heldout_texts = [docs[i] for i in split["heldout"]]
    reserve = [docs[i] for i in split["fresh"]]
    new_run = not rundir.root.exists()
    if new_run:
        tokenizer = train_tokenizer(train_texts, cfg.tokenizer.vocab_size, cfg.tokenizer.kind)
    else:
        _check_same_run(rundir, cfg, split)
        tokenizer = load_tokenizer(rundir.root / "tokenizer")
    human = [Doc(ids, text) for ids, text in zip(encode(tokenizer, train_texts), train_texts)]
    _preflight(cfg, [d.ids for d in human])

    def new_human(g: int, n: int) -> list[Doc]:
        texts = fresh_texts(cfg, reserve, len(train_texts), g, n)
        return [Doc(ids, text) for ids, text in zip(encode(tokenizer, texts), texts)]
    # Built before anything is written: a verifier that does not import, or a
    # dedup setting datasketch cannot band, is bad input like any other.
    curator = Curator(cfg, human, len(tokenizer), tokenizer.eos_token_id, lambda g: rundir.gen(g) / "model", accelerator.device,
                      accelerator.autocast, lambda g, stage: stage_seed(cfg.seed, g, "curate:" + stage))
    if new_run and main:
        create(rundir.root, {"config.yaml": to_yaml(cfg), "split.json": json.dumps(split) + "\n"},
               {"tokenizer": tokenizer.save_pretrained})
    accelerator.wait_for_everyone()
    if main:
        rundir.lock()
    evaluator = Evaluator(cfg, tokenizer, train_texts, heldout_texts, autocast=accelerator.autocast,
                          truth_seed=stage_seed(cfg.seed, 0, "truth"), reference_seed=stage_seed(cfg.seed, 0, "reference"))
    for note in evaluator.notes:
        say(note)
    if main and not (rundir.root / "reference.json").exists():
        reference = evaluator.reference(stage_seed(cfg.seed, 0, "reference"))
        write_json(rundir.root / "reference.json", reference)
        if not reference["comparable"]:
            say(f"note: the human reference has {reference['eval_words']:,} words, fewer than eval.sample_words="
                f"{cfg.eval.sample_words:,}; reference.json is not comparable with the generations")
    say(f"testbed: {source_name(cfg.data)}, {len(train_texts)} train / {len(heldout_texts)} held-out documents, "
        f"{sum(len(d.ids) for d in human):,} train tokens, vocab {len(tokenizer)}, run_dir={rundir.root}")
    if cfg.track:
        say(f"tracking: {', '.join(cfg.track)} in {rundir.root / 'tracking'}"
            + (f" (tensorboard --logdir {rundir.root / 'tracking'})" if "tensorboard" in cfg.track else ""))

    done = rundir.finished_generations()
    if done == list(range(cfg.generations + 1)):
        say(f"all {cfg.generations + 1} generations are finished; raise generations= to extend the run")
    elif done:
        say(f"resuming after generation {done[-1]} (finished: {', '.join(map(str, done))})")
    try:
        for g in range(cfg.generations + 1):
            if not rundir.finished(g):
                _generation(g, cfg, rundir, accelerator, tokenizer, human, new_human, evaluator, curator, say)
    except TestbedError:
        # A new run that fails before its first generation would otherwise leave a
        # directory that blocks the corrected command ("different config").
        if new_run and main and not rundir.finished_generations():
            shutil.rmtree(rundir.root, ignore_errors=True)
        raise
    finally:
        _track(accelerator, rundir, cfg, None)
    rows = read_jsonl(rundir.root / "metrics.jsonl")
    say(summary(rows))
    return rows


def _generation(g, cfg, rundir, accelerator, tokenizer, human, new_human, evaluator, curator, say):
    main = accelerator.is_main_process
    eos = tokenizer.eos_token_id
    tag = f"gen {g}/{cfg.generations}"

    synthetic = {k: _read_corpus(rundir.gen(k) / "corpus.jsonl", tokenizer, cfg.mix.keep_unfinished)
                 for k in _synthetic_needed(g, cfg)}
    examples = training_set(g, human, synthetic, cfg.mix, stage_seed(cfg.seed, g, "mix"),
                            stage_seed(cfg.seed, 0, "anchor"), lambda n: new_human(g, n))
    pool = composition(examples)
    say(f"{tag} · mix: {cfg.mix.regime if g else 'human'}, {len(examples)} docs "
        f"({', '.join(f'{k} {v}' for k, v in pool.items())})")
    curation = []
    if g and curator.steps():
        examples, curation = _curate(g, examples, synthetic[g - 1], curator, accelerator, say, tag)
    mix = composition(examples)
    human_tokens = sum(len(d.ids) + 1 for label, d in examples if label == HUMAN)

    part = rundir.begin(g) if main else None
    log = _logger(part) if main else (lambda line: None)
    set_seed(stage_seed(cfg.seed, g, "init"))
    model = _initial_model(g, cfg, rundir, len(tokenizer), eos)
    blocks = pack([d.ids for _, d in examples], eos, model.config.n_positions, stage_seed(cfg.seed, g, "pack"))
    set_seed(stage_seed(cfg.seed, g, "train"))
    _track(accelerator, rundir, cfg, f"gen_{g:03d}")
    result = train(model, blocks, cfg.train, accelerator, stage_seed(cfg.seed, g, "order"), log=log, desc=f"{tag} train")
    model = result.pop("model")
    say(f"{tag} · train: {n_params(model) / 1e6:.2f}M params, {result['tokens']:,} tokens in {result['seconds']:.0f}s "
        f"({result['tokens_per_s']:,.0f} tok/s), loss {result['final_loss']:.3f}")

    if main:
        save_model(model, part / "model")
        start = time.perf_counter()
        mark = cfg.sample.watermark
        processor = (make_processor(model.config.vocab_size, accelerator.device, mark.gamma, mark.delta, mark.key)
                     if mark.enabled else None)
        samples = sample_corpus(model, cfg.sample, eos, stage_seed(cfg.seed, g, "sample"),
                                human_prompts=[d.ids for d in human], autocast=accelerator.autocast,
                                desc=f"{tag} sample", watermark=processor)
        seconds = time.perf_counter() - start
        texts = [tokenizer.decode(s.prompt[1:] + s.tokens) for s in samples]
        n_tokens = sum(len(s.tokens) + s.ended for s in samples)
        say(f"{tag} · sample: {len(samples)} docs, {n_tokens:,} tokens in {seconds:.0f}s ({n_tokens / seconds:,.0f} tok/s), "
            f"{sum(s.ended for s in samples) / len(samples):.0%} ended with EOS")
        write_jsonl(part / "corpus.jsonl", (
            {"text": t, "source": synthetic_label(g), "generation": g, "ended": s.ended, "tokens": len(s.tokens)}
            for t, s in zip(texts, samples)))
        write_json(part / "corpus.json", {
            "source": synthetic_label(g), "model": f"gen_{g:03d}/model", "documents": len(samples), "tokens": n_tokens,
            "unfinished": sum(not s.ended for s in samples),
            "seed": stage_seed(cfg.seed, g, "sample"), "sampling": to_dict(cfg)["sample"], "seconds": seconds})
        if curation:
            write_json(part / "curation.json", {"pool": pool, "steps": curation})
        # Expected under uniform block sampling; exact for whole passes under compute=epochs.
        result["human_tokens_seen"] = round(result["passes"] * human_tokens)
        write_json(part / "train.json", {"pool": pool, "mix": mix, "blocks": len(blocks), "init": cfg.train.init if g else "scratch",
                                         **result, "params": n_params(model), "environment": environment(accelerator)})
        start = time.perf_counter()
        first = texts if g == 0 else [r["text"] for r in read_jsonl(rundir.gen(0) / "corpus.jsonl")]
        row = {"generation": g, **evaluator.evaluate(model, texts, samples, seed=stage_seed(cfg.seed, 0, "eval"),
                                                     gen0_texts=first)}
        row["train_mix"] = mix
        row.update(train_tokens=result["tokens"], train_passes=result["passes"], human_tokens_seen=result["human_tokens_seen"])
        row["unfinished_docs"] = sum(not s.ended for s in samples)
        if curation:
            row.update(curation_summary(sum(pool.values()), examples, curation))
            row["curation"] = curation
        write_json(part / "metrics.json", row)
        # Before the generation is marked finished: one redone after a kill logs its metrics again.
        _track(accelerator, rundir, cfg, "generations", step=g)
        accelerator.log({k: v for k, v in numbers(row).items() if k != "generation"}, step=g)
        _track(accelerator, rundir, cfg, None)
        say(f"{tag} · eval ({time.perf_counter() - start:.0f}s): " + ", ".join(
            f"{k} {row[k]:.4g}" for k in evaluator.headline if k in row))
        rundir.finish(g, part)
    accelerator.wait_for_everyone()
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _curate(g, examples, newest, curator, accelerator, say, tag):
    """Curate on the main process, then share the kept set, so every process trains on the same data."""
    if accelerator.is_main_process:
        kept, reports = curator(g, examples, newest)
        keep = {id(d) for _, d in kept}
        mask = [id(d) in keep for _, d in examples]
    else:
        mask, reports = None, None
    mask, reports = broadcast_object_list([mask, reports])
    kept = [e for e, k in zip(examples, mask) if k]
    for r in reports:
        say(f"{tag} · curate {r['step']}: {r['docs_in']} -> {r['docs_out']} docs "
            f"(removed {r['removed_human']} human, {r['removed_synthetic']} synthetic) in {r['seconds']:.1f}s")
    if not kept:
        emptied = next(r["step"] for r in reports if r["docs_out"] == 0)
        raise TestbedError(
            f"generation {g}: curation kept none of {len(examples)} documents (curate.{emptied.split('_')[0]} removed the "
            "last of them); loosen that step, or mix in human text (mix.regime=anchor)")
    return kept, reports


def _read_corpus(path: Path, tokenizer, keep_unfinished: bool) -> list[Doc]:
    """A synthetic corpus as documents; those cut off at the length cap left out unless kept, since
    training appends an end token that would teach the cut as an ending."""
    rows = [r for r in read_jsonl(path) if keep_unfinished or r["ended"]]
    ids = encode(tokenizer, [r["text"] for r in rows])
    return [Doc(i, r["text"], r["ended"]) for i, r in zip(ids, rows)]


def _preflight(cfg: Config, human: list[list[int]]) -> None:
    """Size checks that need the tokenized corpus, made before anything is written."""
    context = resolve(cfg.model)["context"]
    max_new_tokens(cfg.sample, context)
    tokens = sum(len(d) + 1 for d in human)
    if tokens < context:
        raise TestbedError(
            f"the human training split has {tokens} tokens, fewer than one block of model.context={context}; "
            "add documents or lower model.context")
    if cfg.sample.prompt == "human" and not any(len(d) >= cfg.sample.prompt_tokens for d in human):
        raise TestbedError(f"sample.prompt=human: no human document has sample.prompt_tokens={cfg.sample.prompt_tokens} tokens")
    check_reserve(cfg, len(human))


def _synthetic_needed(g: int, cfg: Config) -> list[int]:
    if g == 0:
        return []
    return list(range(g)) if cfg.mix.regime == "accumulate" else [g - 1]


def _initial_model(g, cfg, rundir, vocab_size, eos):
    if g == 0 or cfg.train.init == "scratch":
        return build_model(cfg.model, vocab_size, eos)
    source = g - 1 if cfg.train.init == "previous" else 0
    return load_model(rundir.gen(source) / "model")


def _check_same_run(rundir: RunDir, cfg: Config, split: dict) -> None:
    """Resume only the same experiment; `generations` may grow, to extend a run, and `track` change."""
    saved_path = rundir.root / "config.yaml"
    if not saved_path.exists():
        raise TestbedError(f"run_dir={rundir.root} exists but is not a testbed run (no config.yaml); choose another run_dir")
    saved = load_config(saved_path)
    changed = [k for k in diff(to_dict(saved), to_dict(cfg)) if k not in ("generations", "track")]
    if changed:
        raise TestbedError(
            f"run_dir={rundir.root} holds a run with a different config (changed: {', '.join(changed)}); "
            "use a new run_dir, or the saved config to resume")
    saved_split = read_json(rundir.root / "split.json")
    if saved_split["sha256"] != split["sha256"]:
        raise TestbedError(f"the human corpus changed since run_dir={rundir.root} was started (split.json checksum differs)")
    if saved_split != split:
        raise TestbedError(f"run_dir={rundir.root} was split by another version of testbed (split.json differs); "
                           "start it again in a new run_dir")


def environment(accelerator) -> dict:
    """Where and with what a generation was made: a resumed run may finish on another machine or stack."""
    import importlib.metadata as meta
    import platform
    from datetime import datetime, timezone

    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    return {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": f"{device.type}: {name}",
            "processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
            "versions": {"python": platform.python_version(),
                         **{p: meta.version(p) for p in ("testbed", "torch", "transformers", "accelerate", "datasets", "tokenizers")}}}


def _check_trackers(track: list[str]) -> None:
    """accelerate drops a tracker whose package is missing with a debug-level note: fail instead, before anything is written."""
    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in track:
        if not available[name]():
            raise TestbedError(f'track: {name} needs the {name} package, which is not installed; '
                               f'pip install -e ".[{name}]" (or pip install {name}), or remove it from track')


def _track(accelerator, rundir, cfg, name, step=0):
    """Point accelerator.log at tracker run `name`, or with None only finish the current one.

    gen_000, gen_001... hold each generation's training curve (step = optimizer step), generations
    the metrics (step = generation). accelerate keeps one set of trackers per Accelerator:
    init_trackers adds to it, and end_training would also shut down the process group that the next
    generation, or the next run of a sweep, still trains with. So the current ones are finished and
    dropped here. TensorBoard writes to <logging_dir>/<project name> but W&B takes the project name
    as its project: each run gets its own logging folder, so that TensorBoard overlays the
    generations' curves, and one W&B project holds them all, grouped by run_dir.
    """
    if not accelerator.log_with:
        return
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []
    if name is None:
        return
    folder = rundir.root / "tracking"
    accelerator.project_configuration.logging_dir = str(folder / name)
    if accelerator.is_main_process:
        folder.mkdir(exist_ok=True)  # W&B writes its files here
    wandb = {"name": f"{rundir.root.name}/{name}", "group": rundir.root.name, "dir": str(folder), "config": to_dict(cfg)}
    if name == "generations":
        # Opened once per generation, it must stay one W&B run: continued by an id that this run
        # directory keeps (config.yaml is written once), not one that a new run at the same path would reuse.
        made = (rundir.root / "config.yaml").stat().st_mtime_ns
        wandb.update(id=hashlib.sha256(f"{rundir.root.resolve()}:{made}".encode()).hexdigest()[:16], resume="allow")
    # purge_step: where TensorBoard drops what an earlier, killed attempt logged from this step on.
    accelerator.init_trackers("testbed", init_kwargs={"tensorboard": {"purge_step": step}, "wandb": wandb})


def _precision(mode: str) -> str:
    """accelerate's name for the configured precision."""
    if mode == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "no" if mode == "fp32" else mode


def _logger(part: Path):
    f = open(part / "log.txt", "a", encoding="utf-8")

    def log(line: str) -> None:
        f.write(line + "\n")
        f.flush()
    return log


def summary(rows: list[dict]) -> str:
    keys = ["generation", "heldout_ppl", "distinct_2", "rare_token_recall"]
    keys += [k for k in ("true_excess_ce", "validity_rate", "grammar_rate", "valid_prefix", "true_tail_recall") if rows and k in rows[0]]
    lines = ["  ".join(f"{k:>17}" for k in keys)]
    for r in rows:
        lines.append("  ".join(f"{r[k]:>17}" if isinstance(r[k], int) else f"{r[k]:>17.4f}" for k in keys))
    return "\n".join(lines)
