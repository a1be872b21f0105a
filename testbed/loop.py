"""The generation loop: train, sample, evaluate; then mix, curate, train, sample, evaluate...

Generation g's folder holds model g, the corpus model g wrote, and model g's
metrics. Generation g+1 trains on a mix drawn from that corpus (and, by
regime, earlier ones and human text). Every stage takes its seed from
(run seed, generation, stage), so a run resumed after a kill computes exactly
what an uninterrupted run would have.
"""
import json
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from testbed import quiet_libraries
from testbed.config import Config, to_dict, to_yaml
from testbed.corpus.fresh import fresh_texts
from testbed.corpus.human import HumanCorpus, check_fits, human_corpus
from testbed.corpus.sources import source_name
from testbed.curate.curator import Curator, curate_everywhere, summary as curation_summary
from testbed.device import environment, hardware, inference_autocast, make_accelerator, on_main, precision_name
from testbed.metrics.spec import numbers
from testbed.metrics.suite import Evaluator
from testbed.mix import (HUMAN, Doc, check_fills_a_block, composition, documents, fill, synthetic_docs,
                         synthetic_label, synthetic_needed, training_set)
from testbed.model import build_model, context_length, load_model, n_params, save_model
from testbed.report.compare import summary
from testbed.rundir import RunDir, create, read_json, read_jsonl, write_json
from testbed.sample import document_text, sample_corpus, written_texts
from testbed.seeds import eval_seed, stage_seed
from testbed.tokenizer import check_reads_unk_whole, load_tokenizer, train_tokenizer, unknown_words
from testbed.tracking import Tracking, check_trackers
from testbed.train import pack, train


@dataclass
class _Run:
    """What every generation of one run shares."""
    cfg: Config
    rundir: RunDir
    accelerator: Accelerator
    tokenizer: object
    human: list[Doc]  # the human training split
    corpus: HumanCorpus  # its fresh reserve feeds mix.anchor_set=fresh
    curator: Curator
    evaluator: Evaluator
    tracking: Tracking
    say: Callable


def run(cfg: Config, say=print) -> list[dict]:
    """Run (or resume) the experiment described by cfg; returns the metrics rows."""
    quiet_libraries()  # from the command line, a Ray worker, a notebook or Python alike
    check_trackers(cfg.track)
    rundir = RunDir(cfg.run_dir)
    new_run = not rundir.root.exists()
    r = None
    try:
        r = _start(cfg, rundir, new_run, say)
        rundir.check_unbroken()
        if r.accelerator.is_main_process and rundir.finished_generations():
            rundir.rebuild_metrics()  # metrics.jsonl is derived from the generations: a cut or lost one is made again
        if progress := rundir.progress(cfg.generations):
            r.say(progress)
            if moved := _made_otherwise(r):
                r.say(moved)
        if r.accelerator.is_main_process and (unlogged := rundir.root / rundir.UNLOGGED).exists():
            # Generation 0 came whole from the run that trained it: log it here too, as this run's step 0.
            first = read_json(rundir.gen(0) / "metrics.json")
            r.tracking.log_generation(0, numbers(first))
            unlogged.unlink()
        for g in range(cfg.generations + 1):
            if not rundir.finished(g):
                _generation(g, r)
    except BaseException:
        # Whatever stopped it (a bad value, a full disk, Ctrl-C), a new run without a finished generation
        # would leave a folder that blocks the corrected command as "a different config".
        if rundir.created and not rundir.finished_generations():
            shutil.rmtree(rundir.root, ignore_errors=True)
        raise
    finally:
        rundir.unlock()
        if r is not None:
            r.tracking.close()
    rows = read_jsonl(rundir.root / "metrics.jsonl")
    r.say(summary(rows))
    return rows


def _made_otherwise(r: _Run) -> str | None:
    """A note where a resumed run goes on with other threads, precision or hardware than its last finished generation
    had: torch's sums round otherwise there, so from here its figures are not those of a run made on one setting."""
    done = r.rundir.finished_generations()
    if not done or done[-1] >= r.cfg.generations:
        return None
    made = read_json(r.rundir.gen(done[-1]) / "train.json").get("environment") or {}
    now = environment(r.accelerator)
    was = (made.get("device"), made.get("mixed_precision") and precision_name(made["mixed_precision"]))
    if None in was or was == (now["device"], now["mixed_precision"]):
        return None
    return (f"note: generation {done[-1]} was made on {was[0]} in {was[1]}, and this launch goes on on "
            f"{now['device']} in {now['mixed_precision']}: its later figures differ in the last digits (and the "
            "samples then diverge) from a run made on one setting throughout; OMP_NUM_THREADS=N (run) or --threads N "
            "(sweep, lab) on the same machine keeps it to one")


def _start(cfg: Config, rundir: RunDir, new_run: bool, say) -> _Run:
    """The human corpus, its split and tokenizer, and a new run directory or the checks that this is the same run."""
    accelerator = make_accelerator(cfg.train, cfg.track, str(rundir.root / "tracking"))
    main = accelerator.is_main_process
    say = say if main else (lambda *a, **k: None)
    corpus = human_corpus(cfg)
    if new_run:
        tokenizer = train_tokenizer(corpus.train, cfg.tokenizer.vocab_size, cfg.tokenizer.kind, say)
    else:
        rundir.check_same_run(cfg, corpus.split)  # before the work below; again under the lock
        tokenizer = load_tokenizer(rundir.root / "tokenizer")
        if not rundir.complete(cfg.generations):
            check_reads_unk_whole(tokenizer, rundir.root / "tokenizer")
    human = documents(tokenizer, corpus.train)
    for note in [*check_fits(cfg, [d.ids for d in human]), *unknown_words(tokenizer, [d.ids for d in human])]:
        say(note)
    # Built before anything is written: a verifier that does not import, or a
    # dedup setting datasketch cannot band, is bad input like any other.
    curator = Curator(cfg, human, len(tokenizer), tokenizer.eos_token_id, rundir, accelerator.device,
                      inference_autocast(accelerator), lambda g, stage: stage_seed(cfg.seed, g, "curate:" + stage))
    if renewed := on_main(accelerator, lambda: _take(cfg, rundir, new_run, corpus.split, tokenizer, accelerator)):
        say(renewed)
    evaluator = Evaluator(cfg, tokenizer, corpus.train, corpus.heldout, autocast=inference_autocast(accelerator),
                          truth_seed=stage_seed(cfg.seed, 0, "truth"), reference_seed=stage_seed(cfg.seed, 0, "reference"),
                          train_ids=[d.ids for d in human], device=accelerator.device)
    for note in evaluator.notes:
        say(note)
    if main and not (rundir.root / "reference.json").exists():
        write_json(rundir.root / "reference.json", evaluator.reference(stage_seed(cfg.seed, 0, "reference"), say))
    say(f"testbed: {source_name(cfg.data)}, {len(corpus.train)} train / {len(corpus.heldout)} held-out documents, "
        f"{sum(len(d.ids) for d in human):,} train tokens, vocab {len(tokenizer)}, {hardware(accelerator, cfg.train)}, "
        f"run_dir={rundir.root}")
    tracking = Tracking(accelerator, rundir.root, cfg)
    if cfg.track:
        say(tracking.where())
    return _Run(cfg, rundir, accelerator, tokenizer, human, corpus, curator, evaluator, tracking, say)


def _take(cfg: Config, rundir: RunDir, new_run: bool, split: dict, tokenizer, accelerator) -> str | None:
    """The run's folder, made for a new run, and held by this launch (RunDir.claim); on the main process."""
    if new_run:
        create(rundir.root, {"config.yaml": to_yaml(cfg), "split.json": json.dumps(split) + "\n"},
               {"tokenizer": tokenizer.save_pretrained})
        rundir.created = True
    return rundir.claim(cfg, split, new_run, accelerator.num_processes)


def _generation(g: int, r: _Run) -> None:
    """One generation, as the method section reads: mix, curate, train, sample, evaluate, commit."""
    tag = f"gen {g}/{r.cfg.generations}"
    examples, newest = _mix(g, r, tag)
    pool = composition(examples)
    curated, curation = _curate(g, r, examples, newest, tag)
    examples = _fill(g, r, curated, tag)
    part = r.rundir.begin(g) if r.accelerator.is_main_process else None
    model, trained = _train(g, r, examples, part, tag)
    if part:
        save_model(model, part / "model")
        samples, texts, corpus = _sample(g, r, model, tag)
        row = _evaluate(g, r, model, texts, samples, tag)
        row.update(train_mix=composition(examples), train_tokens=trained["tokens"], train_passes=trained["passes"],
                   human_tokens_seen=trained["human_tokens_seen"], unfinished_docs=corpus["unfinished"])
        if curation:
            row.update(curation_summary(sum(pool.values()), curated, curation, examples), curation=curation)
        _commit(g, r, part, texts, samples, corpus=corpus,
                train={"pool": pool, "mix": row["train_mix"], **trained, "environment": environment(r.accelerator)},
                curation={"pool": pool, "steps": curation} if curation else None, metrics=row)
    r.accelerator.wait_for_everyone()
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _mix(g: int, r: _Run, tag: str):
    """Generation g's training pool (provenance, document), and the newest synthetic corpus."""
    cfg = r.cfg
    synthetic = {k: synthetic_docs(r.rundir.corpus(k), r.tokenizer, cfg.mix.keep_unfinished)
                 for k in synthetic_needed(g, cfg.mix.regime)}
    examples = training_set(g, r.human, synthetic, cfg.mix, _seed(r, g, "mix"), _seed(r, 0, "anchor"),
                            lambda n: documents(r.tokenizer, fresh_texts(cfg, r.corpus.reserve, len(r.human), g, n)))
    counts = ", ".join(f"{k} {v}" for k, v in composition(examples).items())
    r.say(f"{tag} · mix: {cfg.mix.regime if g else 'human'}, {len(examples)} docs ({counts})")
    if g:
        check_fills_a_block(g, examples, cfg.model.dims()["context"], cfg.mix, len(r.human),
                            written=sum(len(r.rundir.corpus(k)) for k in synthetic),
                            kept=sum(map(len, synthetic.values())))
    return examples, synthetic.get(g - 1)


def _curate(g: int, r: _Run, examples, newest, tag: str):
    """The pool after the curation steps the config turns on (none for generation 0's human text), and what each
    step kept."""
    if not (g and r.curator.steps()):
        return examples, []
    return curate_everywhere(r.curator, g, examples, newest, r.accelerator, lambda m: r.say(f"{tag} · {m}"),
                             r.cfg.model.dims()["context"])


def _fill(g: int, r: _Run, curated, tag: str):
    """With mix.after_curation, the curated pool cut to the budget: the amount is equal after curation."""
    if not (g and r.cfg.mix.after_curation):
        return curated
    examples = fill(curated, r.cfg.mix, len(r.human), _seed(r, g, "fill"))
    counts = ", ".join(f"{k} {v}" for k, v in composition(examples).items())
    r.say(f"{tag} · fill: {len(curated)} curated docs -> {len(examples)} ({counts})")
    return examples


def _train(g: int, r: _Run, examples, part, tag: str):
    """Model g, trained from its initial weights on the (curated) pool packed into blocks."""
    if g == 0 and (shared := r.rundir.first_model()):
        return _shared_first_model(r, shared, part, tag)
    cfg, eos = r.cfg, r.tokenizer.eos_token_id
    set_seed(_seed(r, g, "init"))
    model = _initial_model(g, r, eos)
    blocks = pack([d.ids for _, d in examples], eos, context_length(model), _seed(r, g, "pack"))
    set_seed(_seed(r, g, "train"))
    r.tracking.open(r.rundir.gen(g).name)
    trained = train(model, blocks, cfg.train, r.accelerator, _seed(r, g, "order"),
                    log=RunDir.log(part) if part else None, desc=f"{tag} train")
    model = trained.pop("model")
    human_tokens = sum(len(d.ids) + 1 for label, d in examples if label == HUMAN)
    pool_tokens = sum(len(d.ids) + 1 for _, d in examples)
    # Expected under uniform block sampling: the human share of the tokens trained (the packed blocks leave out the
    # tail of the pool that fills no block, so passes x human_tokens could exceed the tokens trained).
    trained["human_tokens_seen"] = round(trained["tokens"] * human_tokens / pool_tokens)
    r.say(f"{tag} · train: {n_params(model) / 1e6:.2f}M params, {trained['tokens']:,} tokens in {trained['seconds']:.0f}s "
          f"({trained['tokens_per_s']:,.0f} tok/s), loss {trained['final_loss']:.3f}")
    return model, {"blocks": len(blocks), "init": cfg.train.init if g else "scratch", **trained, "params": n_params(model)}


def _shared_first_model(r: _Run, shared, part, tag: str):
    """Model 0 as another run of the lab trained it under the same settings, with its training record and log."""
    trained = {k: v for k, v in read_json(shared / "train.json").items() if k not in ("pool", "mix", "environment")}
    if part:
        shutil.copy(shared / "log.txt", part / "log.txt")
    r.say(f"{tag} · train: model 0 shared, trained once for the runs that differ from this one only in what "
          f"generation 0 does not train on ({trained['tokens']:,} tokens in {trained['seconds']:.0f}s)")
    return load_model(shared / "model", r.accelerator.device), {**trained, "shared": True}


def _initial_model(g: int, r: _Run, eos: int):
    init = r.cfg.train.init
    if g == 0 or init == "scratch":
        return build_model(r.cfg.model, len(r.tokenizer), eos)
    return load_model(r.rundir.model(g - 1 if init == "previous" else 0))


def _sample(g: int, r: _Run, model, tag: str):
    """Model g's synthetic corpus: the samples, their texts, and the corpus's provenance."""
    cfg, seed = r.cfg, _seed(r, g, "sample")
    start = time.perf_counter()
    verified = _verified(r) if cfg.sample.unit == "verified" else None
    samples = sample_corpus(model, cfg.sample, r.tokenizer.eos_token_id, seed, human_prompts=[d.ids for d in r.human],
                            autocast=inference_autocast(r.accelerator), desc=f"{tag} sample", accept=verified)
    seconds = time.perf_counter() - start
    texts = [document_text(r.tokenizer, s) for s in samples]
    n_tokens = sum(len(s.tokens) + s.ended for s in samples)
    r.say(f"{tag} · sample: {len(samples)} docs, {n_tokens:,} tokens in {seconds:.0f}s ({n_tokens / seconds:,.0f} tok/s), "
          f"{sum(s.ended for s in samples) / len(samples):.0%} ended with EOS")
    extra = {}
    if verified:
        extra["verified"] = sum(map(verified, samples))
        r.say(f"{tag} · sample: {extra['verified']} of {len(samples)} pass the verifier"
              + ("" if extra["verified"] >= cfg.sample.size else
                 f", short of sample.size={cfg.sample.size}: sample.max_docs stopped it"))
    corpus = {"source": synthetic_label(g), "model": f"{r.rundir.gen(g).name}/model", "documents": len(samples), "tokens": n_tokens,
              "unfinished": sum(not s.ended for s in samples), "seed": seed, "sampling": to_dict(cfg)["sample"],
              "seconds": seconds, **extra}
    return samples, texts, corpus


def _verified(r: _Run):
    """sample.unit=verified: does the next generation's verifier keep this sample (in a pool, if it ended)."""
    verifier, keep_unfinished = r.curator.step("verifier").verifier, r.cfg.mix.keep_unfinished
    return lambda s: (s.ended or keep_unfinished) and bool(verifier(document_text(r.tokenizer, s)))


def _evaluate(g: int, r: _Run, model, texts, samples, tag: str) -> dict:
    """Model g and what it wrote, scored against the human text and, for drift, against what model 0 wrote."""
    start = time.perf_counter()
    first = texts if g == 0 else [row["text"] for row in r.rundir.corpus(0)]
    row = {"generation": g, **r.evaluator.evaluate(model, texts, samples, eval_seed(r.cfg.seed), gen0_texts=first)}
    r.say(f"{tag} · eval ({time.perf_counter() - start:.0f}s): " + ", ".join(
        f"{k} {row[k]:.4g}" if row[k] is not None else f"{k} null" for k in r.evaluator.headline if k in row))
    return row


def _commit(g: int, r: _Run, part, texts, samples, **records) -> None:
    """Write generation g's files, log its metrics, and mark it finished: from here a rerun skips it."""
    # Under sample.prompt=human a text opens with a human prompt: `written` is what the model wrote after it,
    # what the metrics count and the report's word pictures read.
    written = written_texts(r.tokenizer, samples, texts)
    documents = [{"text": t, "source": synthetic_label(g), "generation": g, "ended": s.ended, "tokens": len(s.tokens),
                  **({"written": w} if written is not texts else {})} for t, s, w in zip(texts, samples, written)]
    RunDir.save(part, documents, **{name: record for name, record in records.items() if record is not None})
    # Before the generation is marked finished: one redone after a kill logs its metrics again.
    r.tracking.log_generation(g, numbers(records["metrics"]))
    r.rundir.finish(g, part)


def _seed(r: _Run, g: int, stage: str) -> int:
    return stage_seed(r.cfg.seed, g, stage)
