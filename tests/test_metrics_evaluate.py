"""The evaluate module is `testbed eval` under evaluate's API: the same row for the same text, its keys described
from the metric table."""
import json

import pytest

from testbed.cli import main
from testbed.corpus.storyworld import StoryWorld
from testbed.metrics import load_evaluate, spec
from testbed.tokenizer import train_tokenizer

# The truth's 300 stories feed only the model's figures, which the module leaves out.
STORYWORLD = ["data.source=storyworld", "eval.truth_docs=2", "eval.rare_max_freq=0.002", "eval.self_bleu_pairs=20"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, words_corpus):
    root = tmp_path_factory.mktemp("evaluate")
    train_tokenizer(words_corpus, 300).save_pretrained(root / "tokenizer")
    return root, load_evaluate()


def eval_command(root, capsys, texts, human=None, overrides=()):
    (root / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    args = ["eval", "--text", str(root / "text.jsonl"), "--tokenizer", str(root / "tokenizer"), "--seed", "3"]
    if human is not None:
        (root / "human.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in human))
        args += ["--human", str(root / "human.jsonl")]
    assert main([*args, *overrides]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_module_gives_testbed_evals_row(setup, capsys, words_corpus):
    root, metric = setup
    world = StoryWorld()
    stories, human = world.sample(30, 1), world.sample(50, 2)  # the references need not match the predictions' count
    got = metric.compute(predictions=stories, references=human, tokenizer=str(root / "tokenizer"), seed=3,
                         sample_words=400, overrides=STORYWORLD)
    assert got == eval_command(root, capsys, stories, human, [*STORYWORLD, "eval.sample_words=400"])
    assert 0 < got["rare_token_recall"] < 1 and "validity_rate" in got and got["documents"] == 30

    # Without references the tail figures are left out, as without --human; predictions may come in batches.
    metric.add_batch(predictions=words_corpus[:10])
    metric.add_batch(predictions=words_corpus[10:])
    plain = metric.compute(tokenizer=str(root / "tokenizer"), seed=3, overrides=["eval.self_bleu_pairs=20"])
    assert plain == eval_command(root, capsys, words_corpus, overrides=["eval.self_bleu_pairs=20"])
    assert "rare_token_recall" not in plain and "validity_rate" not in plain

    # The description lists exactly the keys a row can hold (semantic_diversity needs eval.embedding_model), each
    # with the table's meaning.
    described = dict(line[2:].split(": ", 1) for line in metric.description.splitlines() if line.startswith("- "))
    unflagged, stale = set(got) - set(described), set(described) - set(got) - {"semantic_diversity"}
    assert not unflagged, f"{sorted(unflagged)}: in the corpus row, but their Metric rows in spec.py lack corpus=True"
    assert not stale, f"{sorted(stale)}: corpus=True in spec.py, but corpus_metrics does not write them"
    for key, meaning in described.items():
        assert key == "documents" or meaning == spec.find(key).meaning
    assert "testbed eval --model" in metric.description  # where perplexity is

    with pytest.raises(ValueError, match="compute"):
        metric.add_batch(predictions=stories, references=human)
    with pytest.raises(ValueError, match="tokenizer"):
        metric.compute(predictions=stories)
