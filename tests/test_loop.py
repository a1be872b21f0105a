"""End to end: the whole generation loop on a tiny config, and resuming after a kill."""
import json
import platform
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from testbed import TestbedError
from testbed import loop
from testbed.config import load_config
from testbed.corpus.sources import load_documents
from testbed.loop import run
from testbed.model import FAMILIES, build_model, context_length
from testbed.report.compare import load_run
from testbed.seeds import stage_seed

pytestmark = pytest.mark.e2e
QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def quiet(*args, **kwargs):
    pass


def test_what_generation_0_and_model_0_read():
    from testbed.rundir import NOT_READ_BY_MODEL_0, first_generation

    def key(*overrides, model=False):
        cfg = load_config(None, list(overrides))
        return first_generation(cfg, NOT_READ_BY_MODEL_0) if model else first_generation(cfg)
    assert key("mix.regime=accumulate", "curate.dedup.exact=true", "generations=7") == key()
    assert key("sample.top_k=20") != key() and key("sample.top_k=20", model=True) == key(model=True)
    assert key("seed=1") != key() and key("train.tokens=1000", model=True) != key(model=True)
    # With sample.unit=verified generation 0 writes until enough pass the verifier: which one is read then.
    verified = ["sample.unit=verified", "mix.size=fixed", "mix.after_curation=true", "curate.verifier.enabled=true"]
    assert key(*verified) != key(*verified, "curate.verifier.name=storyworld_lenient")
    assert key(*verified) != key(*verified, "mix.keep_unfinished=true")
    assert key(*verified, model=True) == key(*verified, "curate.verifier.name=storyworld_lenient", model=True) == key(model=True)


def test_run_writes_the_documented_run_directory(tmp_path, tiny_run):
    cfg = tiny_run(tmp_path / "run")
    rows = run(cfg, say=quiet)
    root = tmp_path / "run"
    assert [r["generation"] for r in rows] == [0, 1, 2]
    for key in ("generation", "heldout_ppl", "distinct_2", "rare_token_recall"):
        assert all(key in r for r in rows), key
    assert all(r["heldout_ppl"] > 1 and 0 <= r["rare_token_recall"] <= 1 for r in rows)
    # Each model also scores generation 0's corpus; generation 0's own is that same corpus.
    assert all(r["gen0_ppl"] > 1 for r in rows) and rows[0]["gen0_ppl"] == rows[0]["self_ppl"]
    # replace: the newest corpus only, less the samples cut off at the length cap
    assert rows[1]["train_mix"] == {"synthetic:gen_000": 80 - rows[0]["unfinished_docs"]}
    assert rows[1]["train_passes"] == pytest.approx(rows[1]["train_tokens"] / (json.loads(
        (root / "gen_001" / "train.json").read_text())["blocks"] * 64))
    assert rows[1]["human_tokens_seen"] == 0
    # All human at generation 0: every token trained is a human one, never more (the packed blocks drop the tail
    # of the pool that fills no block, so passes x the pool's tokens used to exceed the tokens trained).
    assert rows[0]["human_tokens_seen"] == rows[0]["train_tokens"]
    for name in ("config.yaml", "split.json", "reference.json", "tokenizer/tokenizer.json", "metrics.jsonl"):
        assert (root / name).exists(), name
    for g in range(3):
        gen = root / f"gen_{g:03d}"
        for name in ("DONE", "model/model.safetensors", "model/config.json", "corpus.jsonl", "corpus.json",
                     "metrics.json", "train.json", "log.txt"):
            assert (gen / name).exists(), f"gen_{g:03d}/{name}"
        corpus = [json.loads(line) for line in open(gen / "corpus.jsonl")]
        assert len(corpus) == 80 and {r["source"] for r in corpus} == {f"synthetic:gen_{g:03d}"}
        sampling = json.loads((gen / "corpus.json").read_text())["sampling"]
        assert (sampling["temperature"], sampling["top_k"], sampling["top_p"]) == (1.0, 0, 1.0)
        made = json.loads((gen / "train.json").read_text())["environment"]
        assert made["device"].startswith("cpu") and made["versions"]["torch"] == torch.__version__
    model = AutoModelForCausalLM.from_pretrained(root / "gen_002" / "model")
    assert model.config.n_positions == 64
    assert not list(root.glob("*.partial"))
    # The saved config is the run's identity and loads back as the same config.
    assert load_config(root / "config.yaml") == cfg


def test_killed_run_resumes_to_the_same_metrics(tmp_path, monkeypatch, tiny_run):
    reference = run(tiny_run(tmp_path / "straight"), say=quiet)

    import testbed.loop as loop

    real_sample = loop.sample_corpus
    calls = []

    def killed_in_generation_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # generation 2, after its model was trained and saved
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_corpus", killed_in_generation_2)
    cfg = tiny_run(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, say=quiet)
    root = tmp_path / "killed"
    assert (root / "gen_001" / "DONE").exists() and not (root / "gen_002").exists()
    assert (root / "gen_002.partial").exists()
    assert [json.loads(line)["generation"] for line in open(root / "metrics.jsonl")] == [0, 1]
    finished = (root / "gen_001" / "model" / "model.safetensors").read_bytes()

    monkeypatch.setattr(loop, "sample_corpus", real_sample)
    lines = []
    resumed = run(cfg, say=lines.append)
    assert any("resuming after generation 1" in line for line in lines)
    assert not any(line.startswith("gen 0/") or line.startswith("gen 1/") for line in lines)  # not redone
    assert (root / "gen_001" / "model" / "model.safetensors").read_bytes() == finished
    assert not (root / "gen_002.partial").exists()
    assert resumed == reference  # exact: every stage is seeded from (seed, generation, stage)


def test_a_different_config_on_an_existing_run_is_refused(tmp_path, tiny_run):
    run(tiny_run(tmp_path / "run", "generations=0"), say=quiet)
    with pytest.raises(TestbedError, match=r"different config \(changed: seed\)"):
        run(tiny_run(tmp_path / "run", "generations=0", "seed=1"), say=quiet)


def test_a_finished_run_releases_its_folder_at_once(tmp_path, tiny_run, monkeypatch):
    from testbed.rundir import RunDir

    # Something may still hold the run's objects (a notebook kernel did): the lock must not wait for them to go,
    # since a lab runs an arm's generation 0 and then the arm in one process.
    held, init = [], RunDir.__init__
    monkeypatch.setattr(RunDir, "__init__", lambda self, root: (init(self, root), held.append(self))[0])
    run(tiny_run(tmp_path / "run", "generations=0"), say=quiet)
    run(tiny_run(tmp_path / "run", "generations=1"), say=quiet)
    assert len(held) >= 2


def test_more_generations_extend_a_finished_run(tmp_path, tiny_run):
    first = run(tiny_run(tmp_path / "run", "generations=0"), say=quiet)
    lines = []
    extended = run(tiny_run(tmp_path / "run", "generations=1"), say=lines.append)
    assert extended[0] == first[0] and [r["generation"] for r in extended] == [0, 1]
    assert load_config(tmp_path / "run" / "config.yaml").generations == 1
    assert not load_run(tmp_path / "run")["partial"], "an extended run reads as finished in reports and labs"
    run(tiny_run(tmp_path / "run", "generations=0"), say=quiet)
    assert load_config(tmp_path / "run" / "config.yaml").generations == 1, "a shorter rerun keeps what it found"


@pytest.mark.parametrize("regime,expected", [
    ("accumulate", {"human": "all", "synthetic:gen_000": 80}),  # every human training document (600 - 60 held out -
    ("anchor", {"human": 20, "synthetic:gen_000": 60}),         # the corpus's exact duplicates)
])
def test_regimes_shape_the_training_set(tmp_path, regime, expected, tiny_run):
    rows = run(tiny_run(tmp_path / "run", "generations=1", f"mix.regime={regime}", "mix.anchor_fraction=0.25",
                    "train.init=previous", "mix.keep_unfinished=true"), say=quiet)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert rows[1]["train_mix"] == ({**expected, "human": len(split["train"])} if expected["human"] == "all" else expected)


def test_unfinished_samples_stay_out_of_the_pool_unless_kept(tmp_path, tiny_run):
    """At context 64 many TinyStories samples hit the length cap: none of them may be trained on as an ending."""
    root = tmp_path / "run"
    rows = run(tiny_run(root, "generations=1"), say=quiet)
    corpus = [json.loads(line) for line in open(root / "gen_000" / "corpus.jsonl")]
    cut = sum(not r["ended"] for r in corpus)
    assert cut > 0 and rows[0]["unfinished_docs"] == cut
    assert json.loads((root / "gen_000" / "corpus.json").read_text())["unfinished"] == cut
    assert rows[1]["train_mix"] == {"synthetic:gen_000": len(corpus) - cut}
    kept = run(tiny_run(tmp_path / "kept", "generations=1", "mix.keep_unfinished=true"), say=quiet)
    assert kept[1]["train_mix"] == {"synthetic:gen_000": len(corpus)}


def test_a_mix_left_empty_by_unfinished_samples_says_so(tmp_path):
    """One token a document: every sample is cut off, so the mix is empty before any curation step could be blamed."""
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "generations=1", "data.docs=300", "data.heldout_docs=30",
                             "model.preset=nano", "model.context=64", "train.tokens=20000", "sample.size=4",
                             "sample.max_new_tokens=1", "eval.sample_words=500", "eval.truth_docs=10",
                             "curate.heuristics.enabled=true"])
    with pytest.raises(TestbedError, match=r"^generation 1: the mix holds no documents: all 4 that model 0 wrote ran "
                                           r"into the length cap unfinished, .* set mix\.keep_unfinished=true"):
        run(cfg, say=quiet)
    assert (tmp_path / "run" / "gen_000" / "DONE").exists() and not (tmp_path / "run" / "gen_001.partial").exists()


def test_a_mix_left_under_one_block_by_unfinished_samples_names_them_and_the_corrected_run_goes_on(tmp_path):
    """A model trained long on a 32-token context writes stories that run past it: all but a few are cut off. Packing's
    advice for too little text, to lower model.context, would cut off more."""
    overrides = [f"run_dir={tmp_path / 'run'}", "generations=1", "data.docs=200", "data.heldout_docs=20",
                 "tokenizer.vocab_size=512", "model.preset=nano", "model.context=32", "train.tokens=60000",
                 "sample.size=40", "sample.batch_size=40", "eval.sample_words=500", "eval.truth_docs=20"]
    cfg = load_config(QUICKSTART, overrides)
    with pytest.raises(TestbedError, match=r"^generation 1: the mix holds [1-9]\d* documents?, \d+ tokens?, less than "
                                           r"one block of model\.context=32: [1-9]\d* of the 40 that model 0 wrote ran "
                                           r"into the length cap unfinished, .* set mix\.keep_unfinished=true"):
        run(cfg, say=quiet)

    # As the error says: generation 0 reads no mix key, so the run goes on from it under the corrected config.
    root = tmp_path / "run"
    before = {p: p.read_bytes() for p in (root / "gen_000").rglob("*") if p.is_file()}
    with pytest.raises(TestbedError, match=r"holds a run with a different config \(changed: mix\.keep_unfinished, train\.lr\)"):
        run(load_config(QUICKSTART, [*overrides, "mix.keep_unfinished=true", "train.lr=0.001"]), say=quiet)
    lines = []
    rows = run(load_config(QUICKSTART, [*overrides, "mix.keep_unfinished=true"]), say=lines.append)
    assert f"run_dir={root}: only generation 0 is finished, and it reads none of the changed keys " \
           "(mix.keep_unfinished): the run goes on under this config" in lines
    assert not any(line.startswith("gen 0/1 · train") for line in lines)
    assert {p: p.read_bytes() for p in before} == before and [r["generation"] for r in rows] == [0, 1]
    assert load_config(root / "config.yaml").mix.keep_unfinished
    with pytest.raises(TestbedError, match=r"holds a run with a different config \(changed: mix\.keep_unfinished\)"):
        run(load_config(QUICKSTART, overrides), say=quiet)  # generation 1 read it

    # A fixed budget of one story, not the cut samples, is what leaves this mix small: packing's own error.
    budget = [f"run_dir={tmp_path / 'budget'}", *overrides[1:], "mix.size=fixed", "mix.docs=1"]
    with pytest.raises(TestbedError, match=r"^the training set has \d+ tokens, fewer than one block of model\.context=32"):
        run(load_config(QUICKSTART, budget), say=quiet)


def test_a_corrected_config_is_checked_again_once_the_run_is_locked(tmp_path, monkeypatch):
    """Between the check that only generation 0 is finished and the lock, a run of the old config may finish
    generation 1: the corrected config must not then be written over it."""
    from testbed.rundir import RunDir

    overrides = [f"run_dir={tmp_path / 'run'}", "generations=0", "data.docs=200", "data.heldout_docs=20",
                 "tokenizer.vocab_size=512", "model.preset=nano", "model.context=32", "train.tokens=4000",
                 "sample.size=40", "sample.batch_size=40", "eval.sample_words=500", "eval.truth_docs=20"]
    run(load_config(QUICKSTART, overrides), say=quiet)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    lock = RunDir.lock

    def another_run_finishes_generation_1_first(self):
        (self.gen(1)).mkdir()
        (self.gen(1) / "DONE").write_text("")
        lock(self)
    monkeypatch.setattr(RunDir, "lock", another_run_finishes_generation_1_first)
    with pytest.raises(TestbedError, match=r"holds a run with a different config \(changed: mix\.keep_unfinished\)"):
        run(load_config(QUICKSTART, [*overrides, "generations=1", "mix.keep_unfinished=true"]), say=quiet)
    assert (tmp_path / "run" / "config.yaml").read_text() == saved
    # The other way round: this config matched when first checked, but before the lock another run went on as
    # its own config (rewriting the saved one) and finished generation 1; this one trained generation 2 on it.
    other = load_config(QUICKSTART, [*overrides, "generations=1", "mix.keep_unfinished=true"])

    def another_run_goes_on_as_its_config_first(self):
        self.continue_as(other)
        lock(self)
    monkeypatch.setattr(RunDir, "lock", another_run_goes_on_as_its_config_first)
    with pytest.raises(TestbedError, match=r"holds a run with a different config \(changed: mix\.keep_unfinished\)"):
        run(load_config(QUICKSTART, [*overrides, "generations=2"]), say=quiet)


def test_fresh_human_text_is_new_each_generation_and_never_the_training_split(tmp_path, monkeypatch, tiny_run):
    """The contaminated pool's human half: from the reserve, a new slice per generation."""
    pools = []
    real = loop.training_set

    def record(*args, **kwargs):
        pools.append(real(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(loop, "training_set", record)
    cfg = tiny_run(tmp_path / "run", "generations=2", "mix.regime=anchor", "mix.anchor_fraction=0.25",
                   "mix.anchor_set=fresh", "data.fresh_docs=40")
    run(cfg, say=quiet)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    docs = load_documents(cfg.data, stage_seed(cfg.seed, 0, "corpus"))
    seen = {docs[i].strip() for i in split["train"] + split["heldout"]}
    anchors = [{d.text for label, d in pool if label == "human"} for pool in pools[1:]]
    assert all(anchors) and not anchors[0] & anchors[1]
    assert not (anchors[0] | anchors[1]) & seen
    with pytest.raises(TestbedError, match=r"needs 60 fresh human documents .* set data.fresh_docs=60 \(a run begun "
                                           r"with 40 keeps them, enough up to generation 2: go further in a new run_dir\)$"):
        run(tiny_run(tmp_path / "more", "generations=3", "mix.regime=anchor", "mix.anchor_fraction=0.25",
                     "mix.anchor_set=fresh", "data.fresh_docs=40"), say=quiet)
    assert not (tmp_path / "more").exists()
    # What it says: more reserve changes the split, so the run it would extend refuses it.
    with pytest.raises(TestbedError, match=r"holds a run with a different config \(changed: data\.fresh_docs\)"):
        run(tiny_run(tmp_path / "run", "generations=3", "mix.regime=anchor", "mix.anchor_fraction=0.25",
                     "mix.anchor_set=fresh", "data.fresh_docs=60"), say=quiet)


def test_bookkeeping_is_rebuilt_from_the_generations_and_an_unmarked_one_redone(tmp_path, tiny_run):
    root = tmp_path / "run"
    cfg = tiny_run(root, "generations=1")
    reference = run(cfg, say=quiet)
    lines = (root / "metrics.jsonl").read_text().splitlines(keepends=True)
    (root / "metrics.jsonl").write_text(lines[0])  # the last row lost
    assert run(cfg, say=quiet) == reference
    (root / "metrics.jsonl").unlink()
    assert run(cfg, say=quiet) == reference
    (root / "gen_001" / "DONE").unlink()  # not finished, whatever it holds: redone, not a dead end
    said = []
    assert [r["heldout_ppl"] for r in run(cfg, say=said.append)] == [r["heldout_ppl"] for r in reference]
    assert any(line.startswith("gen 1/1 · train") for line in said) and (root / "gen_001" / "DONE").exists()


def test_a_run_is_its_config_not_the_spelling_of_its_folder(tmp_path, tiny_run):
    import shutil

    root = tmp_path / "runs" / "x"
    first = run(tiny_run(root, "generations=0"), say=quiet)
    for spelling in (f"{root}/", str(tmp_path / "runs" / "." / "x")):
        said = []
        assert run(tiny_run(spelling, "generations=0"), say=said.append) == first
        assert any("generation 0 is finished; raise generations= (now 0)" in line for line in said)
    shutil.copytree(root, tmp_path / "copy")
    assert run(tiny_run(tmp_path / "copy", "generations=0"), say=quiet) == first
    said = []
    run(tiny_run(root, "generations=0"), say=quiet)
    run(tiny_run(tmp_path / "copy", "generations=1"), say=quiet)
    run(tiny_run(tmp_path / "copy", "generations=0"), say=said.append)
    assert any("holds generations 0 to 1, more than generations=0 asks for" in line for line in said)
    assert not any("resuming" in line for line in said)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "gpt2"])  # gpt2, the default, runs in every other test
def test_the_loop_runs_with_every_model_family(tmp_path, tiny_run, family):
    cfg = tiny_run(tmp_path / "run", "generations=1", f"model.family={family}")
    rows = run(cfg, say=quiet)
    assert [r["generation"] for r in rows] == [0, 1] and all(r["heldout_ppl"] > 1 for r in rows)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "gen_001" / "model")
    assert type(model) is type(build_model(cfg.model, 16, 0)) and context_length(model) == 64


def test_a_damaged_generation_is_named_never_used(tmp_path, tiny_run):
    from testbed.report.compare import load_run

    root = tmp_path / "run"
    run(tiny_run(root, "generations=0", "train.init=previous"), say=quiet)  # generation 1 would start from model 0
    done = json.loads((root / "gen_000" / "DONE").read_text())
    assert {"corpus.jsonl", "metrics.json", "model/model.safetensors"} <= set(done)
    corpus = root / "gen_000" / "corpus.jsonl"
    intact = corpus.read_bytes()
    corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:10]))  # cut to 10 of its lines
    extend = tiny_run(root, "generations=1", "train.init=previous")
    with pytest.raises(TestbedError, match=r"gen_000/corpus.jsonl: damaged .*; delete .*gen_000 to make generation 0 again"):
        run(extend, say=quiet)
    assert not (root / "gen_001").exists()
    with pytest.raises(TestbedError, match=r"gen_000/corpus.jsonl: damaged"):
        load_run(root)
    corpus.write_bytes(intact)
    weights = root / "gen_000" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)  # tensor bytes zeroed: same size, other checksum
    weights.write_bytes(bytes(data))
    with pytest.raises(TestbedError, match=r"model.safetensors: damaged"):
        run(extend, say=quiet)
    weights.unlink()
    with pytest.raises(TestbedError, match=r"model.safetensors: missing"):
        load_run(root)


def test_a_run_from_python_prints_its_own_lines_not_the_libraries_advice(tmp_path, capfd):
    """A notebook's kernel starts with transformers' warnings and progress bars on; the command line turned them
    off, run_lab and run did not, and a student saw 27 red outputs (an attention-mask warning among them)."""
    from transformers.utils import logging

    logging.set_verbosity_warning()
    logging.enable_progress_bar()
    # model.context=null: the preset's context, as configs/tinystories.yaml leaves it (the mix's check once read null)
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path / 'run'}", "generations=1", "data.docs=200", "data.heldout_docs=20",
                                   "tokenizer.vocab_size=512", "model.preset=nano", "model.context=null", "train.tokens=4000",
                                   "sample.size=40", "sample.batch_size=40", "eval.sample_words=500", "eval.truth_docs=20"])
    run(cfg)
    out, err = capfd.readouterr()
    assert "gen 1/1 · eval" in out
    assert not any(noise in err for noise in ("Writing model shards", "Loading weights", "attention_mask", "[transformers]")), err


def test_the_opening_line_says_where_it_trains_and_in_what_precision(tiny_run, tmp_path):
    from types import SimpleNamespace

    from testbed.config import TrainConfig
    from testbed.device import hardware

    cpu = SimpleNamespace(device=torch.device("cpu"), num_processes=1, mixed_precision="no")
    assert hardware(cpu, TrainConfig(mixed_precision="auto")).endswith(", training in fp32 (bf16 would be slower on this CPU)")
    assert hardware(cpu, TrainConfig(mixed_precision="fp32")).endswith(", training in fp32")  # chosen, not lacking
    bf16 = SimpleNamespace(device=torch.device("cpu"), num_processes=1, mixed_precision="bf16")
    assert hardware(bf16, TrainConfig(mixed_precision="auto")).endswith(", training in bf16")

    lines = []
    run(tiny_run(tmp_path / "run", "data.source=storyworld", "data.docs=300", "generations=0", "train.mixed_precision=fp32"),
        say=lines.append)
    opening = next(line for line in lines if line.startswith("testbed: "))
    assert f"cpu: {platform.machine()} CPU, {torch.get_num_threads()} thread" in opening
    assert ", training in fp32, run_dir=" in opening


def test_a_run_whose_corpus_file_changed_says_how_to_go_on(tmp_path, tiny_run, local_corpus):
    corpus = tmp_path / "stories.txt"
    corpus.write_text(local_corpus.read_text(encoding="utf-8"), encoding="utf-8")
    run(tiny_run(tmp_path / "run", "generations=0", f"data.path={corpus}"), say=quiet)
    corpus.write_text(corpus.read_text(encoding="utf-8").replace("the", "a", 1), encoding="utf-8")
    with pytest.raises(TestbedError, match=r"the human corpus changed since run_dir=.* was started \(split\.json checksum "
                                           r"differs\); put back the file it was started on, or start the new corpus "
                                           r"in a new run_dir$"):
        run(tiny_run(tmp_path / "run", "generations=1", f"data.path={corpus}"), say=quiet)


def test_a_run_resumed_on_other_threads_says_its_figures_now_differ(tmp_path, tiny_run):
    """The thread count is not part of a run's config, yet changes its sums: a run extended at another count went on
    unremarked, and its later figures were those of neither setting."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run(tiny_run(tmp_path / "run", "generations=0"), say=quiet)
        said = []
        run(tiny_run(tmp_path / "run", "generations=1"), say=said.append)
        assert not any("was made on" in line for line in said)
        torch.set_num_threads(2)
        said = []
        run(tiny_run(tmp_path / "run", "generations=2"), say=said.append)
    finally:
        torch.set_num_threads(before)
    [note] = [line for line in said if "was made on" in line]
    assert re.match(r"note: generation 1 was made on cpu: .* CPU, 1 thread in (fp32|bf16), and this launch goes on on "
                    r"cpu: .* CPU, 2 threads in (fp32|bf16): its later figures differ", note), note
