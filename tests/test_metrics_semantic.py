import math

import pytest
import torch

from testbed.metrics.semantic import embed, load, mean_cosine_distance

WORDS = "the cat dog sat ran on a mat far away happy sad".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT and its word-level tokenizer, saved as a local sentence-embedding model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("bert")
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return str(path)


def test_mean_cosine_distance_hand_computed():
    assert mean_cosine_distance(torch.eye(3)) == pytest.approx(1.0)  # orthogonal: every pair at distance 1
    assert mean_cosine_distance(torch.tensor([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(0.0)  # same direction
    # pairs (e1, e1+e2) and (e2, e1+e2) at cosine 1/sqrt2, (e1, e2) at 0
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert mean_cosine_distance(v) == pytest.approx(1 - (2 / math.sqrt(2)) / 3)
    assert mean_cosine_distance(v[:1]) == 0.0
    # a row of zeros (a text without tokens) has no cosine: left out, not counted as orthogonal to every other
    assert mean_cosine_distance(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.0)
    assert mean_cosine_distance(torch.cat([v, torch.zeros(2, 2)])) == pytest.approx(mean_cosine_distance(v))


def test_embed_mean_pools_over_real_tokens_only(tiny_bert):
    tokenizer, model = load(tiny_bert)
    short, long = "the cat", "the dog sat on a mat far away"
    alone = embed([short], tokenizer, model)
    padded = embed([short, long], tokenizer, model)  # short is padded to long's length here
    assert padded.shape == (2, 16)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)
    enc = tokenizer([short], return_tensors="pt")
    with torch.no_grad():
        manual = model(**enc).last_hidden_state[0].mean(0)
    assert torch.allclose(alone[0], manual, atol=1e-5)


def test_evaluator_reports_semantic_diversity_only_when_configured(tiny_bert, words_corpus):
    from testbed.config import load_config
    from testbed.metrics.suite import Evaluator
    from testbed.tokenizer import train_tokenizer

    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=50"])
    texts = ["the cat sat on a mat", "the dog ran far away", "a happy cat", "a sad dog"]
    ev = Evaluator(cfg, train_tokenizer(words_corpus, 300), texts, texts)
    assert "semantic_diversity" not in ev.corpus_metrics(texts, seed=0)
    assert ["eval.embedding_model" in n for n in ev.notes] == [True, False]  # and that 6 words make no rare band
    cfg.eval.embedding_model = tiny_bert
    ev = Evaluator(cfg, train_tokenizer(words_corpus, 300), texts, texts)
    tokenizer, model = load(tiny_bert)
    expected = mean_cosine_distance(embed(texts, tokenizer, model))  # 4 documents < eval.embedding_docs: all, in order
    assert ev.corpus_metrics(texts, seed=0)["semantic_diversity"] == pytest.approx(expected, rel=1e-5)
    assert not any("embedding" in n for n in ev.notes)
    assert ev.corpus_metrics(["a happy cat"] * 4, seed=0)["semantic_diversity"] == pytest.approx(0.0, abs=1e-6)


def test_a_folder_that_is_not_an_embedding_model_is_one_line(tmp_path):
    from testbed import TestbedError

    (tmp_path / "empty").mkdir()
    with pytest.raises(TestbedError, match=r"^eval\.embedding_model=.*empty: not a model and tokenizer transformers can "
                                           r"load \(.*\); give a local sentence-embedding model"):
        load(str(tmp_path / "empty"))


def test_a_model_whose_tokenizer_has_no_pad_token_is_padded_with_its_end_token(tmp_path, words_corpus):
    """A testbed generation (GPT-2, word tokenizer without a pad token) as the embedder: batches of unequal lengths
    embed, and a text's row does not depend on the batch it came in."""
    from testbed.config import ModelConfig
    from testbed.model import build_model, save_model
    from testbed.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(words_corpus, 300)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path / "m")
    torch.manual_seed(0)
    save_model(build_model(ModelConfig(n_layer=1, n_embd=16, n_head=2, context=32), len(tokenizer),
                           tokenizer.eos_token_id), tmp_path / "m")
    tok, model = load(str(tmp_path / "m"))
    assert tok.pad_token == tok.eos_token
    both = embed(["the cat sat on the mat", "a dog"], tok, model)
    alone = embed(["a dog"], tok, model)
    assert torch.allclose(both[1], alone[0], atol=1e-5)
    # this tokenizer adds no special tokens, so an empty story (a model that ends at once) has no tokens at all
    empty = embed(["", "a dog", ""], tok, model, batch_size=2)  # the second batch holds nothing but ""
    assert torch.equal(empty[0], torch.zeros(16)) and torch.equal(empty[2], torch.zeros(16))
    assert torch.allclose(empty[1], alone[0], atol=1e-5)
    assert mean_cosine_distance(embed(["", "a dog", "a dog"], tok, model)) == pytest.approx(0.0, abs=1e-6)


def test_the_embedding_model_runs_on_the_runs_device(tiny_bert, words_corpus, monkeypatch):
    """A run kept on the CPU on a machine with a GPU (ACCELERATE_USE_CPU) embedded on the GPU all the same."""
    import torch

    from testbed.config import load_config
    from testbed.metrics.suite import Evaluator
    from testbed.tokenizer import train_tokenizer

    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=50",
                             f"eval.embedding_model={tiny_bert}"])
    texts = ["the cat sat on a mat", "the dog ran far away", "a happy cat", "a sad dog"]
    ev = Evaluator(cfg, train_tokenizer(words_corpus, 300), texts, texts, device=torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU the run was told not to use
    assert ev.corpus_metrics(texts, seed=0)["semantic_diversity"] > 0
    assert next(ev.embedder[1].parameters()).device.type == "cpu"
