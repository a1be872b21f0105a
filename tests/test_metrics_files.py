"""`testbed eval`: the suite on a text file, the same numbers as the functions it calls."""
import json
import math

import pytest
import torch

from testbed.cli import main
from testbed.config import ModelConfig
from testbed.metrics import diversity, perplexity
from testbed.metrics.files import read_texts
from testbed.model import build_model, save_model
from testbed.rundir import read_jsonl, write_jsonl
from testbed.text import words
from testbed.tokenizer import encode, train_tokenizer

SYNTHETIC = ["The cat sat on the mat.", "The cat sat.", "A dog ran far away, far away, far away."]
HUMAN = ["the cat sat on the mat", "the dog ran to the park", "a zebra met a quokka"]


@pytest.fixture(scope="module")
def run_like(tmp_path_factory, words_corpus):
    """RUN/tokenizer and RUN/gen_000/model (uniform: every logit 0), as a run lays them out."""
    root = tmp_path_factory.mktemp("run")
    tokenizer = train_tokenizer(words_corpus, 300)
    tokenizer.save_pretrained(root / "tokenizer")
    model = build_model(ModelConfig(n_layer=1, n_embd=16, n_head=2, context=32), len(tokenizer), tokenizer.eos_token_id)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    save_model(model, root / "gen_000" / "model")
    (root / "synthetic.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in SYNTHETIC))
    (root / "human.txt").write_text("\n".join(HUMAN) + "\n\n")
    return root, tokenizer


def test_read_texts(run_like):
    root, _ = run_like
    assert read_texts(root / "synthetic.jsonl") == SYNTHETIC
    assert read_texts(root / "human.txt") == HUMAN  # blank lines are not documents
    # A corpus.jsonl of sample.prompt=human: the loop's metrics count what the model wrote after the prompt.
    prompted = root / "prompted.jsonl"
    prompted.write_text("".join(json.dumps({"text": f"once upon a time {t}", "written": t}) + "\n" for t in SYNTHETIC))
    assert read_texts(prompted) == SYNTHETIC


def test_read_texts_ends_lines_at_newlines_only(tmp_path):
    """A run writes corpus.jsonl with raw non-ASCII, so a text may hold U+2028 or U+0085: they are not line ends
    (neither for `datasets`, which loads local .txt corpora)."""
    texts = ["one\u2028two", "three\x85four", "five\u2029six"]
    write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in texts])
    assert read_texts(tmp_path / "corpus.jsonl") == texts == [r["text"] for r in read_jsonl(tmp_path / "corpus.jsonl")]
    (tmp_path / "docs.txt").write_bytes("doc one\x85still one\r\ndoc two\rdoc three\n".encode())
    assert read_texts(tmp_path / "docs.txt") == ["doc one\x85still one", "doc two", "doc three"]


def test_eval_command(run_like, capsys):
    root, tokenizer = run_like
    # HUMAN has 17 words (14 bigrams): 0.1 of them is a threshold of count 1 on both
    assert main(["eval", "--model", str(root / "gen_000" / "model"), "--text", str(root / "synthetic.jsonl"),
                 "--human", str(root / "human.txt"), "eval.sample_words=100", "eval.rare_max_freq=0.1"]) == 0
    out = capsys.readouterr()
    row = json.loads(out.out)
    assert "semantic_diversity off" in out.err
    assert row["ppl"] == pytest.approx(300, rel=1e-5)  # the uniform model, with the run's tokenizer found by itself
    tokens = sum(len(d) + 1 for d in encode(tokenizer, SYNTHETIC))
    assert row["bpb"] == pytest.approx(tokens * math.log2(300) / sum(len(t) + 1 for t in SYNTHETIC), rel=1e-5)
    assert row["eval_words"] == 18 and row["documents"] == 3
    # human rare words (count 1): cat sat on mat dog ran to park zebra met quokka; the synthetic text has the first 6
    assert row["rare_token_recall"] == pytest.approx(6 / 11)
    assert row["loop_rate"] == pytest.approx(1 / 3)  # "far away" three times: 6 words
    assert {"ppl_rare", "unigram_kl", "rare_bigram_recall", "self_bleu"} <= set(row)


def test_eval_of_a_prompted_corpus_scores_the_model_on_whole_documents_and_counts_only_what_it_wrote(run_like, capsys):
    """A corpus.jsonl of sample.prompt=human: the loop's self-perplexity reads whole documents, its word figures only
    `written`; testbed eval does the same (bits per byte tells the two apart, the uniform model's ppl cannot)."""
    root, _ = run_like
    prompted = root / "prompted_eval.jsonl"
    prompted.write_text("".join(json.dumps({"text": f"once upon a time {t}", "written": t}) + "\n" for t in SYNTHETIC))
    (root / "whole.txt").write_text("".join(f"once upon a time {t}\n" for t in SYNTHETIC))
    (root / "written.txt").write_text("".join(f"{t}\n" for t in SYNTHETIC))
    rows = {}
    for name in ("prompted_eval.jsonl", "whole.txt", "written.txt"):
        assert main(["eval", "--model", str(root / "gen_000" / "model"), "--text", str(root / name),
                     "eval.sample_words=100"]) == 0
        rows[name] = json.loads(capsys.readouterr().out)
    assert rows["prompted_eval.jsonl"]["bpb"] == pytest.approx(rows["whole.txt"]["bpb"])
    assert rows["prompted_eval.jsonl"]["bpb"] != pytest.approx(rows["written.txt"]["bpb"])
    assert rows["prompted_eval.jsonl"]["eval_words"] == rows["written.txt"]["eval_words"] == 18


def test_eval_command_without_model_or_human_leaves_their_metrics_out(run_like, capsys):
    root, _ = run_like
    assert main(["eval", "--text", str(root / "synthetic.jsonl"), "--tokenizer", str(root / "tokenizer")]) == 0
    out, err = capsys.readouterr()
    assert "rare" not in err  # no note about a rare band of human text it was not given
    row = json.loads(out)
    assert "ppl" not in row and "rare_token_recall" not in row and "unigram_kl" not in row
    assert row["distinct_1"] == pytest.approx(diversity.distinct_n([words(t) for t in SYNTHETIC], 1))


def test_eval_command_errors_in_one_line(run_like, capsys, tmp_path):
    root, _ = run_like
    assert main(["eval", "--text", str(tmp_path / "gone.txt"), "--tokenizer", str(root / "tokenizer")]) == 2
    assert "gone.txt: file not found" in capsys.readouterr().err
    assert main(["eval", "--text", str(root / "human.txt")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    for given, what in [(tmp_path / "none", "not found"), (root / "gen_000", "not a tokenizer folder")]:
        assert main(["eval", "--text", str(root / "human.txt"), "--tokenizer", str(given)]) == 2
        assert capsys.readouterr().err.strip() == (f"error: --tokenizer {given}: {what}"
                                                   f"{' (no tokenizer.json or tokenizer_config.json)' if 'folder' in what else ''}"
                                                   "; give a run's tokenizer/ folder, such as RUN/tokenizer")


def test_bits_per_byte_is_tokenizer_free():
    assert perplexity.bits_per_byte([8 * math.log(2)], ["abc"]) == pytest.approx(2.0)


def test_eval_refuses_keys_it_does_not_read(run_like, capsys):
    """eval reads eval.* and data.source: a train or model key, the run's seed, or how a run reads its corpus file
    (data.text_field, data.max_docs) would be taken and change nothing."""
    root, _ = run_like
    for override, fix in [("train.lr=5", "drop it"), ("model={n_layer: 2}", "drop it"), ("seed=3", "use --seed N"),
                          ("data.text_field=story", "whatever data.* says"), ("data.max_docs=5", "whatever data.* says")]:
        assert main(["eval", "--text", str(root / "human.txt"), "--tokenizer", str(root / "tokenizer"), override]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {override}: eval reads only the eval.* and data.source keys") and fix in err, err
        assert "\n" not in err


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_eval_refuses_a_file_it_would_read_a_line_at_a_time_as_documents(run_like, capsys, tmp_path, suffix):
    # A .json array was one "document" of JSON text, scored as if it were a story; a .parquet said "not UTF-8".
    given = tmp_path / f"stories{suffix}"
    given.write_text(json.dumps([{"text": t} for t in SYNTHETIC]), encoding="utf-8")
    root, _ = run_like
    assert main(["eval", "--text", str(given), "--tokenizer", str(root / "tokenizer")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {given}: a {suffix} file; testbed eval reads a .jsonl (a "
                                               "\"text\" field a line) or text with one document a line: convert it "
                                               "to one of those")


def test_a_human_text_too_small_for_a_rare_band_is_noted_not_left_to_read_as_collapse(run_like, capsys):
    root, _ = run_like
    args = ["eval", "--text", str(root / "synthetic.jsonl"), "--human", str(root / "human.txt"), "--tokenizer",
            str(root / "tokenizer"), "eval.sample_words=100"]
    assert main(args) == 0
    out = capsys.readouterr()
    row = json.loads(out.out)
    assert row["rare_token_recall"] is None and row["rare_mass_recall"] is None and row["tail_mass"] is None
    assert row["recall_by_band"]["rare"] is None and row["unigram_kl"] is not None
    assert ("note: no word of the human training split is rare (17 words, too few for eval.rare_max_freq=5e-05 to "
            "reach a count of 1), so the rare recalls and tail_mass read null; use a split of at least 20,000 words, or set "
            "eval.rare_quantile") in out.err
    assert main([*args, "eval.rare_max_freq=0.1"]) == 0
    assert "is rare" not in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ('{"text": "ok \\ud800 bad"}', "line 1 holds a lone surrogate escape (such as \\ud800), which is no character the "
                                    "tokenizer can read; fix or remove that line"),  # was a tokenizer TypeError
    ("[" * 100_000, "line 1 is not valid JSON (maximum recursion depth exceeded"),  # was a RecursionError traceback
])
def test_a_jsonl_line_no_tokenizer_could_read_is_named(tmp_path, line, message):
    from testbed import TestbedError

    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(TestbedError) as e:
        read_texts(path)
    assert str(e.value).startswith(f"{path}: {message}")


def test_eval_of_a_runs_own_corpus_reads_as_its_metrics_json(tmp_path, tiny_run, capsys):
    """testbed eval on a generation's model and corpus scored other samples and, under data.source=storyworld,
    other true stories than the run had (seed 0 for both), so its figures disagreed with the run's own."""
    from testbed import metrics
    from testbed.loop import run

    root = tmp_path / "run"
    run(tiny_run(root, "generations=0", "data.source=storyworld", "seed=3", "eval.truth_docs=20"), say=lambda *_: None)
    gen = root / "gen_000"
    assert main(["eval", "--text", str(gen / "corpus.jsonl"), "--model", str(gen / "model"), "data.source=storyworld"]) == 0
    out = capsys.readouterr()
    assert f"--model lies in run {root.resolve()}: scored with its eval settings and seeds (seed=3)" in out.err
    row, saved = json.loads(out.out), json.loads((gen / "metrics.json").read_text())
    corpus = [m.key for m in metrics.spec.METRICS if m.corpus and m.key in saved and m.key in row]
    assert {"distinct_2", "self_bleu", "validity_rate", "true_tail_recall"} <= set(corpus)
    for key in [*corpus, "true_excess_ce"]:
        assert row[key] == pytest.approx(saved[key], rel=1e-9, abs=1e-12), key
    assert main(["eval", "--text", str(gen / "corpus.jsonl"), "--model", str(gen / "model"), "data.source=storyworld",
                 "--seed", "0"]) == 0  # a seed given is the seed used
    assert json.loads(capsys.readouterr().out)["self_bleu"] != saved["self_bleu"]
