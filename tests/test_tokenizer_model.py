import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from testbed import TestbedError
from testbed.config import ModelConfig, load_config
from testbed.config import PRESETS
from testbed.model import build_model, context_length, load_model, n_params, save_model
from testbed import tokenizer as tokenizer_module
from testbed.tokenizer import EOS, TokenIds, encode, id_dtype, load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer(words_corpus):
    return train_tokenizer(words_corpus, 300)


def test_vocab_size_is_exact_with_enough_text(words_corpus, tokenizer):
    assert sum(len(d.split()) for d in words_corpus) > 300
    assert len(tokenizer) == 300


def test_vocab_is_at_most_vocab_size_on_little_text():
    tok = train_tokenizer(["ab ab"], 300)
    assert 257 <= len(tok) <= 300  # 256 bytes + EOS are always there


def test_eos_is_one_special_token(tokenizer):
    eos = tokenizer.eos_token_id
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == EOS
    assert tokenizer.bos_token_id == tokenizer.pad_token_id == eos
    assert tokenizer.all_special_ids == [eos]
    assert tokenizer.convert_tokens_to_ids(EOS) == eos and tokenizer.convert_ids_to_tokens(eos) == EOS


def test_encode_adds_no_special_tokens(tokenizer):
    ids = encode(tokenizer, ["the fox ran"])[0]
    assert tokenizer.eos_token_id not in ids
    assert encode(tokenizer, []) == []


def test_encode_holds_every_document_in_one_flat_array(monkeypatch, words_corpus, tokenizer):
    monkeypatch.setattr(tokenizer_module, "_BATCH", 3)  # several batches, so the array grows between them
    long_run = "x" * 2500 + " the " + "y" * 1200  # cut into pieces: 2500 // 1000 + 2 of them
    docs = words_corpus[:7] + [long_run, ""] + words_corpus[7:12]
    ids = encode(tokenizer, docs)
    expected = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    expected[7] = [i for p in tokenizer_module._pieces(long_run) for i in tokenizer(p, add_special_tokens=False)["input_ids"]]
    assert len(tokenizer_module._pieces(long_run)) == 4 and tokenizer.decode(ids[7]) == long_run
    assert isinstance(ids, TokenIds) and len(ids) == len(docs) and ids == expected
    assert ids.flat.dtype == np.uint16 and len(ids.flat) == sum(map(len, expected))  # no spare room left
    assert ids.lengths().tolist() == [len(e) for e in expected]
    assert all(np.shares_memory(d, ids.flat) for d in ids if len(d))  # views, not copies
    assert [d.tolist() for d in ids] == expected and ids[-1].tolist() == expected[-1]
    assert [d.tolist() for d in ids[2:5]] == expected[2:5]
    with pytest.raises(IndexError):
        ids[len(docs)]
    assert ids != expected[:-1] and ids != expected[:-1] + [expected[-1] + [1]]


def test_ids_are_16_bit_while_the_vocabulary_fits():
    assert id_dtype(300) == id_dtype(65_536) == np.uint16 and id_dtype(65_537) == np.int32


@pytest.mark.parametrize("text", [
    "The fox ran, and the owl didn't!",
    "Hello , world ! it 's  two  spaces\n\nand a tab\t.",  # no clean-up of spaces before punctuation
    "café naïve Zürich 日本語 🙂 — “quotes”",
    " leading and trailing ",
])
def test_decode_encode_round_trip(tokenizer, text):
    ids = encode(tokenizer, [text])[0]
    assert tokenizer.decode(ids) == text


def test_bpe_merges_common_words(tokenizer):
    # byte-level alone would be one token per byte; merges make frequent words shorter
    assert len(encode(tokenizer, ["the river"])[0]) < len("the river")


def test_save_and_load_round_trip(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    texts = ["The fox ran.", "café 🙂", "x" + EOS + "y"]
    assert encode(loaded, texts) == encode(tokenizer, texts)
    assert len(loaded) == len(tokenizer)
    assert loaded.eos_token_id == loaded.bos_token_id == loaded.pad_token_id == tokenizer.eos_token_id


# --- model -------------------------------------------------------------------

def gpt2_params(vocab, n_layer, n_embd, context, **_):
    """Token + position embeddings (the output layer is tied), 12d^2 + 13d per block, final LayerNorm."""
    return vocab * n_embd + context * n_embd + n_layer * (12 * n_embd ** 2 + 13 * n_embd) + 2 * n_embd


@pytest.mark.parametrize("preset, low, high", [
    ("nano", 0.35e6, 0.45e6),  # 432,768
    ("tiny", 1.0e6, 1.2e6),  # 1,071,872
    ("small", 5.2e6, 5.4e6),  # 5,328,896
    ("medium", 14.5e6, 15.5e6),  # 15,179,520
    ("large", 32.5e6, 34e6),  # 33,386,112
])
def test_preset_parameter_counts_are_in_the_documented_ranges(preset, low, high):
    expected = gpt2_params(2048, **PRESETS[preset])
    assert low <= expected <= high
    if preset in ("nano", "tiny", "small"):  # the larger ones only by the formula, for speed
        assert n_params(build_model(ModelConfig(preset=preset), 2048, 0)) == expected


def test_overrides_apply_over_the_preset():
    cfg = ModelConfig(preset="tiny", n_layer=1, context=32)
    assert cfg.dims() == dict(n_layer=1, n_embd=128, n_head=4, context=32)
    model = build_model(cfg, 300, 0)
    assert isinstance(model, GPT2LMHeadModel)
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size) == (1, 128, 4, 32, 300)
    assert context_length(model) == 32
    assert c.eos_token_id == c.bos_token_id == c.pad_token_id == 0
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0.0
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied


def test_dims_do_not_change_the_presets():
    ModelConfig(preset="nano", n_layer=7).dims()
    assert PRESETS["nano"]["n_layer"] == 2


def test_n_embd_not_divisible_by_n_head():
    with pytest.raises(TestbedError, match=r"model\.n_embd=100.*model\.n_head=3"):
        build_model(ModelConfig(preset="nano", n_embd=100, n_head=3), 300, 0)


def test_save_model_round_trip(tmp_path, make_model):
    model = make_model(vocab=300)
    save_model(model, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    for loaded in (AutoModelForCausalLM.from_pretrained(tmp_path / "m"), load_model(tmp_path / "m")):
        assert isinstance(loaded, GPT2LMHeadModel)
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert loaded.config.n_positions == 32 and loaded.config.eos_token_id == 0


def test_literal_end_token_in_a_document_is_text(words_corpus):
    tok = train_tokenizer(words_corpus, 300)
    (ids,) = encode(tok, ["a <|endoftext|> b"])
    assert tok.eos_token_id not in ids and tok.decode(ids) == "a <|endoftext|> b"


def test_llama_family_builds_saves_and_reloads(tmp_path):
    from transformers import LlamaForCausalLM

    gpt2 = build_model(ModelConfig(preset="tiny"), 2048, 0)
    llama = build_model(ModelConfig(family="llama", preset="tiny"), 2048, 0)
    assert isinstance(llama, LlamaForCausalLM) and context_length(llama) == PRESETS["tiny"]["context"]
    c = llama.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (4, 128, 4)
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()  # tied, as GPT-2's
    # The same size class: SwiGLU sized to GPT-2's MLP; GPT-2 adds learned positions and biases.
    assert abs(n_params(llama) - n_params(gpt2)) / n_params(gpt2) < 0.1
    save_model(llama, tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, LlamaForCausalLM) and (tmp_path / "m" / "model.safetensors").exists()
    x = torch.tensor([[0, 5, 9, 3]])
    assert torch.allclose(llama.eval()(input_ids=x).logits, loaded.eval()(input_ids=x).logits)


def test_llama_needs_an_even_head_size():
    with pytest.raises(TestbedError, match=r"model.family=llama: model.n_embd / model.n_head = 33 must be even"):
        ModelConfig(family="llama", n_embd=66, n_head=2).dims()


def test_a_registered_model_family_builds_saves_and_reloads(tmp_path, monkeypatch):
    from transformers import MistralConfig, MistralForCausalLM

    from testbed import model as models

    def mistral(dims, ids):
        return MistralForCausalLM(MistralConfig(
            hidden_size=dims["n_embd"], intermediate_size=2 * dims["n_embd"], num_hidden_layers=dims["n_layer"],
            num_attention_heads=dims["n_head"], num_key_value_heads=1, max_position_embeddings=dims["context"], **ids))
    monkeypatch.setitem(models.FAMILIES, "mistral", mistral)
    cfg = load_config(None, ["model.preset=nano", "model.context=32"]).model
    cfg.family = "mistral"  # ModelConfig.family names the shipped families; building reads the registry
    torch.manual_seed(0)
    built = models.build_model(cfg, vocab_size=50, eos_id=0)
    assert isinstance(built, MistralForCausalLM) and models.context_length(built) == 32
    models.save_model(built, tmp_path / "m")
    loaded = models.load_model(tmp_path / "m")
    ids = torch.tensor([[0, 5, 7, 9]])
    with torch.no_grad():
        assert torch.equal(built(ids).logits, loaded(ids).logits)


def _old_word_tokenizer(docs, vocab_size):
    """The word kind as it was before <|unk|> was kept whole: byte-level splitting alone."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[EOS, "<|unk|>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token="<|unk|>")


def test_word_kind_splits_text_as_byte_level_does(words_corpus):
    texts = words_corpus + ["Hello world, it's 3 o'clock!  \n\n  Tabs\tand   spaces  ", "café naïve don’t 日本語",
                            "a <|unk", "<|endoftext|> in text", "x" * 3000]
    new, old = train_tokenizer(words_corpus, 300, "word"), _old_word_tokenizer(words_corpus, 300)
    assert new.get_vocab() == old.get_vocab()
    assert encode(new, texts) == encode(old, texts)


def test_a_sampled_unknown_word_re_encodes_as_one_unknown(words_corpus):
    # The next generation re-encodes the text the last one wrote: an <|unk|> it wrote must stay one <|unk|>,
    # or the unknowns triple every generation.
    tok = train_tokenizer(words_corpus, 300, "word")
    unk = tok.unk_token_id
    ids = tok(" the cat", add_special_tokens=False)["input_ids"]
    written = ids[:1] + [unk, unk] + ids[1:] + [unk]
    text = tok.decode(written)
    assert encode(tok, [text])[0].tolist() == written
    assert encode(tok, [" the <|unk|> cat"])[0].tolist() == [ids[0], unk] + ids[1:]
    old = _old_word_tokenizer(words_corpus, 300)
    assert (encode(old, [text])[0] == unk).sum() == 9  # what the fix is for


def test_a_word_tokenizer_saved_and_loaded_keeps_unknowns_whole(tmp_path, words_corpus):
    train_tokenizer(words_corpus, 300, "word").save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert encode(tok, ["the<|unk|><|unk|>"])[0].tolist()[1:] == [tok.unk_token_id] * 2


def test_a_word_tokenizer_from_before_the_fix_is_refused_naming_its_folder(tmp_path, words_corpus):
    from testbed.tokenizer import check_reads_unk_whole
    check_reads_unk_whole(train_tokenizer(words_corpus, 300, "word"), tmp_path)
    check_reads_unk_whole(train_tokenizer(words_corpus, 300), tmp_path)  # bpe has no unknowns to misread
    _old_word_tokenizer(words_corpus, 300).save_pretrained(tmp_path)
    with pytest.raises(TestbedError) as e:
        check_reads_unk_whole(load_tokenizer(tmp_path), tmp_path)
    assert str(e.value).startswith(f"{tmp_path}: a word tokenizer saved before the fix of 2026-11-27")
    assert "as 3 unknowns" in str(e.value) and "new run_dir" in str(e.value)


def test_every_family_the_config_accepts_is_registered_and_back():
    # A name added to ModelConfig.family but not to FAMILIES would pass validation and fail with a KeyError.
    import typing

    from testbed.model import FAMILIES
    assert set(typing.get_args(ModelConfig.__annotations__["family"])) == set(FAMILIES)


def test_a_word_vocabulary_that_leaves_much_of_the_text_unknown_is_noted():
    # Shakespeare through the word kind's 2,048 words: 9.9% <|unk|>, rare recall capped near 0, ppl flattered, unsaid.
    from testbed.tokenizer import encode, train_tokenizer, unknown_words

    docs = ["the cat sat on the mat", "the dog ran to the park", "a zebra met a quokka"] * 3
    small = train_tokenizer(docs, 8, "word")  # 6 words and the two specials
    ids = encode(small, docs)
    unknown = sum(int((np.asarray(d) == small.unk_token_id).sum()) for d in ids) / sum(len(d) for d in ids)
    assert unknown_words(small, ids) == [
        f"note: {unknown:.1%} of the human training split's tokens are <|unk|> (tokenizer.kind=word keeps 6 words): no "
        "model can write the words it left out, and predicting <|unk|> flatters perplexity; raise "
        "tokenizer.vocab_size, or tokenizer.kind=bpe for open text"]
    whole = train_tokenizer(docs, 100, "word")
    assert unknown_words(whole, encode(whole, docs)) == []
    bpe = train_tokenizer(docs, 300, "bpe")
    assert unknown_words(bpe, encode(bpe, docs)) == []
