import math

import pytest
import torch
from transformers import Cache
from transformers.cache_utils import DynamicLayer

import testbed.sample as sample_mod
from testbed import TestbedError
from testbed.config import SampleConfig
from testbed.sample import draw, max_new_tokens, next_token_distribution, sample_batch, sample_corpus

from conftest import DEVICES

EOS = 0  # the conftest models' EOS id


def logits_of(probs):
    return torch.tensor([probs]).log()


# --- next_token_distribution -------------------------------------------------

def test_pure_ancestral_is_exactly_softmax():
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(next_token_distribution(logits, 1.0, 0, 1.0), logits.softmax(-1))


def test_top_k_keeps_exactly_k_tokens():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    p = next_token_distribution(logits, 1.0, 2, 1.0)
    # tokens 1 and 2 survive: e^3 / (e^3 + e^2) and e^2 / (e^3 + e^2)
    z = math.exp(3) + math.exp(2)
    assert torch.allclose(p, torch.tensor([[0.0, math.exp(3) / z, math.exp(2) / z, 0.0]]), atol=1e-6)
    assert int((p > 0).sum()) == 2


def test_top_k_at_least_vocab_is_off():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.equal(next_token_distribution(logits, 1.0, 4, 1.0), logits.softmax(-1))
    assert torch.equal(next_token_distribution(logits, 1.0, 10, 1.0), logits.softmax(-1))


@pytest.mark.parametrize("top_p, expected", [
    # sorted mass: 0.4 (tok 1), 0.3 (tok 3), 0.2 (tok 2), 0.1 (tok 0); cumulative 0.4, 0.7, 0.9, 1.0
    (0.35, [0.0, 1.0, 0.0, 0.0]),  # 0.4 >= 0.35: token 1 alone
    (0.6, [0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7]),  # 0.4 < 0.6 <= 0.7
    (0.85, [0.0, 0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9]),  # 0.7 < 0.85 <= 0.9
    (0.95, [0.1, 0.4, 0.2, 0.3]),  # needs all four
])
def test_top_p_keeps_smallest_prefix_reaching_p(top_p, expected):
    p = next_token_distribution(logits_of([0.1, 0.4, 0.2, 0.3]), 1.0, 0, top_p)
    assert torch.allclose(p, torch.tensor([expected]), atol=1e-6)


@pytest.mark.parametrize("temperature, expected", [
    (2.0, [1 / 3, 2 / 3]),  # logits [0, ln 4] / 2 = [0, ln 2]
    (0.5, [1 / 17, 16 / 17]),  # logits [0, ln 4] * 2 = [0, ln 16]
])
def test_temperature_scales_logits(temperature, expected):
    p = next_token_distribution(torch.tensor([[0.0, math.log(4)]]), temperature, 0, 1.0)
    assert torch.allclose(p, torch.tensor([expected]), atol=1e-6)


def test_top_p_applies_to_the_tempered_distribution():
    logits = torch.tensor([[0.0, math.log(4)]])  # probs 0.2, 0.8
    assert torch.allclose(next_token_distribution(logits, 1.0, 0, 0.75), torch.tensor([[0.0, 1.0]]))
    # at T=2 the probs are 1/3, 2/3 and 2/3 < 0.75, so both stay
    assert torch.allclose(next_token_distribution(logits, 2.0, 0, 0.75), torch.tensor([[1 / 3, 2 / 3]]), atol=1e-6)


# --- draw --------------------------------------------------------------------

def test_draw_matches_probabilities_and_never_draws_zero_probability():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    n = 200_000
    tokens = draw(probs.expand(n, -1), torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=6).double()
    assert counts[probs == 0].sum() == 0
    expected = n * probs.double()
    sigma = (n * probs.double() * (1 - probs.double())).sqrt()
    assert ((counts - expected).abs() <= 5 * sigma).all(), counts


def test_draw_keeps_a_rare_token_at_its_rate():
    probs = torch.tensor([1 - 1e-4, 1e-4])
    n = 400_000
    hits = int(draw(probs.expand(n, -1), torch.Generator().manual_seed(1)).sum())
    assert abs(hits - 40) <= 5 * math.sqrt(40)


def test_draw_is_deterministic_for_a_seeded_generator():
    probs = torch.softmax(torch.randn(100, 30, generator=torch.Generator().manual_seed(0)), -1)
    a = draw(probs, torch.Generator().manual_seed(7))
    b = draw(probs, torch.Generator().manual_seed(7))
    c = draw(probs, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draw_one_hot_rows():
    probs = torch.eye(5)
    assert draw(probs, torch.Generator().manual_seed(0)).tolist() == [0, 1, 2, 3, 4]


# --- max_new_tokens ------------------------------------------------------------

def test_max_new_tokens_defaults_to_filling_the_context():
    assert max_new_tokens(SampleConfig(), 32) == 31
    assert max_new_tokens(SampleConfig(prompt="human", prompt_tokens=8), 32) == 23
    assert max_new_tokens(SampleConfig(max_new_tokens=31), 32) == 31


def test_too_large_max_new_tokens_names_the_key():
    with pytest.raises(TestbedError, match=r"sample\.max_new_tokens=32.*<=31"):
        max_new_tokens(SampleConfig(max_new_tokens=32), 32)


def test_prompt_filling_the_context_names_prompt_tokens():
    with pytest.raises(TestbedError, match=r"sample\.prompt_tokens=31"):
        max_new_tokens(SampleConfig(prompt="human", prompt_tokens=31), 32)
    # Unprompted, the prompt is the end token alone, and prompt_tokens plays no part: the context is what to raise.
    with pytest.raises(TestbedError, match=r"^model\.context=1 leaves no room .*; raise model\.context$"):
        max_new_tokens(SampleConfig(prompt="eos", prompt_tokens=8), 1)


@pytest.mark.parametrize("overrides, message", [
    (["model.context=1"], r"^model\.context=1 leaves no room .*; raise model\.context$"),
    (["model.context=9", "sample.prompt=human"], r"^sample\.prompt_tokens=8 leaves no room in the model context of 9 "),
    # The preset's context, not only one set by hand (nano's is 128): refused when the config is built, not after
    # the corpus and the tokenizer, or in a sweep when that grid point's run begins.
    (["model.preset=nano", "sample.prompt=human", "sample.prompt_tokens=200"],
     r"^sample\.prompt_tokens=200 leaves no room in the model context of 128 "),
    (["model.preset=nano", "sample.max_new_tokens=200"], r"^sample\.max_new_tokens=200 does not fit: .*<=127"),
    (["model.n_head=3"], r"^model\.n_embd=128 must be divisible by model\.n_head=3$"),
    (["model.family=llama", "model.n_embd=66", "model.n_head=2"], r"^model\.family=llama: .* = 33 must be even"),
])
def test_a_context_with_no_room_to_write_is_refused_before_the_run(overrides, message):
    from testbed.config import load_config

    with pytest.raises(TestbedError, match=message):
        load_config(None, overrides)
    load_config(None, ["model.context=10", "sample.prompt=human"])  # one token of room is enough


# --- sample_batch / sample_corpus ----------------------------------------------

def cfg(**kw):
    kw.setdefault("batch_size", 8)
    return SampleConfig(**kw)


def test_same_seed_same_samples(make_model):
    model = make_model()
    a = sample_corpus(model, cfg(size=10, max_new_tokens=12), EOS, seed=3)
    b = sample_corpus(model, cfg(size=10, max_new_tokens=12), EOS, seed=3)
    c = sample_corpus(model, cfg(size=10, max_new_tokens=12), EOS, seed=4)
    assert a == b
    assert [s.tokens for s in a] != [s.tokens for s in c]


def test_unit_docs_gives_exactly_size_docs(make_model):
    corpus = sample_corpus(make_model(), cfg(size=11, batch_size=4, max_new_tokens=6), EOS, seed=0)
    assert len(corpus) == 11
    assert all(s.prompt == [EOS] for s in corpus)


def test_unit_tokens_stops_once_the_size_is_reached(make_model):
    corpus = sample_corpus(make_model(), cfg(size=100, unit="tokens", batch_size=3, max_new_tokens=8), EOS, seed=0)
    counts = [len(s.tokens) for s in corpus]
    assert sum(counts) >= 100 and sum(counts[:-1]) < 100


def test_unit_tokens_stops_with_one_line_when_every_document_ends_at_once(make_model, eos_bias):
    """A model that ends every document at its first token writes no tokens: the count would never grow."""
    model = make_model()
    eos_bias(model, 1e9)
    # 1026: the first whole batch of 3 at or past 1,024 documents in a row
    with pytest.raises(TestbedError, match=r"sample\.unit=tokens: the last 1026 documents all ended at their first "
                                           r"token, .* sample\.size=100 tokens"):
        sample_corpus(model, cfg(size=100, unit="tokens", batch_size=3, max_new_tokens=8), EOS, seed=0)


def test_unit_tokens_goes_on_through_small_batches_that_end_at_once_by_chance(make_model, monkeypatch):
    """In batches of one, a healthy model that ends 3 documents in 4 at once writes a batch of nothing most of the
    time: the run stopped there, as if the model had collapsed."""
    import testbed.sample
    from testbed.sample import Sample

    calls = []

    def batch(model, prompts, cfg, eos_id, max_new, generator, watermark):
        calls.append(1)
        return [Sample(prompts[0].tolist(), [7, 8] if len(calls) % 4 == 0 else [], True)]
    monkeypatch.setattr(testbed.sample, "sample_batch", batch)
    corpus = sample_corpus(make_model(), cfg(size=20, unit="tokens", batch_size=1, max_new_tokens=8), EOS, seed=0)
    assert sum(len(s.tokens) for s in corpus) == 20 and len(corpus) == 40


def test_unit_verified_samples_until_enough_pass(make_model):
    def even(s):
        return s.tokens[0] % 2 == 0
    corpus = sample_corpus(make_model(), cfg(size=5, unit="verified", batch_size=4, max_new_tokens=6), EOS, seed=0,
                           accept=even)
    passed = [even(s) for s in corpus]
    assert sum(passed) == 5 and passed[-1]  # it stops at the fifth that passes, mid-batch
    assert len(corpus) > 5


def test_unit_verified_gives_up_after_max_docs(make_model):
    model, never = make_model(), (lambda s: False)
    assert len(sample_corpus(model, cfg(size=3, unit="verified", max_docs=10, batch_size=4, max_new_tokens=4), EOS,
                             seed=0, accept=never)) == 10
    assert len(sample_corpus(model, cfg(size=2, unit="verified", batch_size=16, max_new_tokens=4), EOS, seed=0,
                             accept=never)) == 40  # default: 20 x size
    with pytest.raises(ValueError, match="accept"):
        sample_corpus(model, cfg(size=2, unit="verified"), EOS, seed=0)


def test_documents_never_contain_eos_and_ended_means_eos_was_emitted(make_model, eos_bias):
    model = make_model()
    eos_bias(model, 2.0)  # about 1 in 10 steps ends a row: a mix of ended and cut-off documents
    corpus = sample_corpus(model, cfg(size=40, max_new_tokens=10), EOS, seed=0)
    assert all(EOS not in s.tokens for s in corpus)
    assert all(len(s.tokens) <= 10 for s in corpus)
    # a row without EOS runs to max_new_tokens; a row with one stops before it
    assert all(s.ended == (len(s.tokens) < 10) for s in corpus)
    assert 0 < sum(s.ended for s in corpus) < 40


def test_max_new_tokens_respected_when_eos_is_impossible(make_model, eos_bias):
    model = make_model()
    eos_bias(model, -1e9)
    corpus = sample_corpus(model, cfg(size=5, max_new_tokens=7), EOS, seed=0)
    assert [len(s.tokens) for s in corpus] == [7] * 5
    assert not any(s.ended for s in corpus)


def test_certain_eos_gives_empty_ended_documents(make_model, eos_bias):
    model = make_model()
    eos_bias(model, 1e9)
    corpus = sample_corpus(model, cfg(size=5), EOS, seed=0)
    assert all(s.tokens == [] and s.ended for s in corpus)


def test_default_max_new_tokens_fills_the_context(make_model, eos_bias):
    model = make_model()
    eos_bias(model, -1e9)
    corpus = sample_corpus(model, cfg(size=2), EOS, seed=0)
    assert [len(s.tokens) for s in corpus] == [31, 31]  # context 32 minus the EOS prompt


def test_too_large_max_new_tokens_raises_in_sample_corpus(make_model):
    with pytest.raises(TestbedError, match=r"sample\.max_new_tokens"):
        sample_corpus(make_model(), cfg(size=2, max_new_tokens=40), EOS, seed=0)


def test_human_prompts(make_model):
    human = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    corpus = sample_corpus(make_model(), cfg(size=20, prompt="human", prompt_tokens=3, max_new_tokens=4),
                           EOS, seed=0, human_prompts=human)
    prompts = {tuple(s.prompt) for s in corpus}
    assert prompts <= {(EOS, 5, 6, 7), (EOS, 11, 12, 13)}  # [9, 10] is too short to be a prompt
    assert len(prompts) == 2


def test_human_prompts_from_views_of_encoded_ids_sample_as_lists(make_model, as_ids):
    human = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    corpus = [sample_corpus(make_model(), cfg(size=6, prompt="human", prompt_tokens=3, max_new_tokens=4), EOS, seed=0,
                            human_prompts=prompts) for prompts in (human, list(as_ids(human)))]
    assert [(s.prompt, s.tokens) for s in corpus[0]] == [(s.prompt, s.tokens) for s in corpus[1]]
    assert all(type(t) is int for s in corpus[1] for t in s.prompt)


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_written_text_starts_at_a_whole_word_where_a_prompt_ends_inside_one(kind):
    """A BPE prompt may stop inside a word: what the model wrote is the whole word it completed, never the fragment
    ("phant", or "ant", a real word it never wrote) that decoding its tokens alone gives."""
    from testbed.sample import Sample, written_text
    from testbed.text import words
    from testbed.tokenizer import encode, train_tokenizer

    tokenizer = train_tokenizer(["an elephant walked home.", "the cat sat on the mat."] * 30, 120 if kind == "bpe" else 50,
                                kind)
    ids = encode(tokenizer, ["an elephant walked home."])[0].tolist()
    seen = {}
    for k in range(1, len(ids)):
        s = Sample([tokenizer.eos_token_id, *ids[:k]], ids[k:], True)
        prompt_words = words(tokenizer.decode(ids[:k]))
        written = words(written_text(tokenizer, s, tokenizer.decode(ids)))
        seen[k] = written
        # The document's words are the prompt's whole words and then what the model wrote, with no fragment.
        whole = ["an", "elephant", "walked", "home"]
        assert written == whole[len(whole) - len(written):] and len(written) >= len(whole) - len(prompt_words)
    if kind == "bpe":  # this small BPE spells the words in pieces: some prompt ends inside "elephant"
        assert any(tokenizer.decode(ids[:k]).endswith("ele") for k in seen)


def test_written_text_where_a_bpe_prompt_ends_inside_a_character():
    """A byte-level prompt cut after the first byte of "ï" decodes to "the na\ufffd": the continuation was
    decoded alone, and "\ufffdve" counted as a word the model wrote."""
    from testbed.sample import Sample, written_text
    from testbed.tokenizer import encode, train_tokenizer

    tokenizer = train_tokenizer(["the cat sat on the mat. " * 20 + "naïve fiancé über"], 270)
    ids = encode(tokenizer, ["the naïve cat"])[0].tolist()
    text = tokenizer.decode(ids)
    cuts = [k for k in range(1, len(ids)) if tokenizer.decode(ids[:k]).endswith("\ufffd")]
    assert cuts, "this tokenizer spells ï in two byte tokens"
    for k in cuts:
        assert written_text(tokenizer, Sample([tokenizer.eos_token_id, *ids[:k]], ids[k:], True), text) == "naïve cat"


def test_human_prompts_none_long_enough(make_model):
    with pytest.raises(TestbedError, match=r"sample\.prompt_tokens=3"):
        sample_corpus(make_model(), cfg(size=2, prompt="human", prompt_tokens=3), EOS, seed=0, human_prompts=[[1, 2]])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("prompt_len", [1, 3])
def test_kv_cache_sampler_matches_full_forward(make_model, eos_bias, monkeypatch, prompt_len, family):
    """Every step's distribution, computed with the cache, equals a full no-cache forward over
    the row's prefix, before and after ended rows are dropped from the batch (and the cache)."""
    model = make_model(seed=1, family=family)
    eos_bias(model, 2.5)  # ~15% of rows end per step, so the batch is compacted several times
    events = []  # ("probs", tensor) / ("draw", tensor) / ("keep", tensor), in call order
    ntd, drw = sample_mod.next_token_distribution, sample_mod.draw
    select = Cache.batch_select_indices

    def spy_ntd(*a):
        out = ntd(*a)
        events.append(("probs", out.clone()))
        return out

    def spy_draw(*a):
        out = drw(*a)
        events.append(("draw", out.clone()))
        return out

    def spy_select(self, indices):
        events.append(("keep", indices.clone()))
        return select(self, indices)

    monkeypatch.setattr(sample_mod, "next_token_distribution", spy_ntd)
    monkeypatch.setattr(sample_mod, "draw", spy_draw)
    monkeypatch.setattr(Cache, "batch_select_indices", spy_select)

    batch, max_new = 16, 24
    prompts = torch.tensor([[EOS] + [3 + (r + j) % 20 for j in range(prompt_len - 1)] for r in range(batch)])
    c = cfg(temperature=0.9, top_k=40, top_p=0.95)
    samples = sample_batch(model, prompts, c, EOS, max_new, torch.Generator().manual_seed(0))

    seqs = [list(p) for p in prompts.tolist()]  # every row's full history, past its EOS too
    rows = list(range(batch))
    compacted_steps, checked = 0, 0
    for kind, value in events:
        if kind == "probs":
            for i, r in enumerate(rows):
                ref_logits = model(input_ids=torch.tensor([seqs[r]])).logits[:, -1]
                ref = next_token_distribution(ref_logits, c.temperature, c.top_k, c.top_p)
                assert torch.allclose(value[i: i + 1], ref, atol=1e-5), (r, len(seqs[r]))
                checked += 1
            compacted_steps += len(rows) < batch
        elif kind == "draw":
            assert value.shape[0] == len(rows)
            for i, r in enumerate(rows):
                seqs[r].append(int(value[i]))
        else:
            rows = [rows[i] for i in value.tolist()]
    assert compacted_steps >= 3, "the test needs steps after compaction"
    assert checked > batch * 3
    for r, s in enumerate(samples):
        drawn = seqs[r][prompt_len:]
        assert s.prompt == prompts[r].tolist()
        assert s.ended == (EOS in drawn)
        assert s.tokens == (drawn[: drawn.index(EOS)] if s.ended else drawn)
        assert s.ended or len(s.tokens) == max_new


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reserved_cache_writes_what_a_concatenated_cache_writes(make_model, eos_bias, monkeypatch, family):
    """The cache that writes into reserved room gives the documents transformers' DynamicLayer (torch.cat)
    gives, bit for bit, through several compactions of the batch."""
    model = make_model(seed=2, family=family)
    eos_bias(model, 2.0)
    prompts = torch.tensor([[EOS]] * 24)

    def run():
        return sample_batch(model, prompts, cfg(), EOS, 30, torch.Generator().manual_seed(5))

    reserved = run()
    monkeypatch.setattr(sample_mod, "_ReservedLayer", lambda room: DynamicLayer())
    concatenated = run()
    assert [s.tokens for s in reserved] == [s.tokens for s in concatenated]
    assert len({len(s.tokens) for s in reserved}) > 3  # rows ended at many steps: the batch was compacted


# --- the static-cache path (sample.static_cache: on CUDA by default, tested here on the CPU) ---

def test_static_cache_is_auto_on_cuda_only():
    assert not sample_mod.use_static_cache(cfg(), torch.device("cpu"))
    assert sample_mod.use_static_cache(cfg(), torch.device("cuda"))
    assert sample_mod.use_static_cache(cfg(static_cache=True), torch.device("cpu"))
    assert not sample_mod.use_static_cache(cfg(static_cache=False), torch.device("cuda"))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("settings", [
    dict(),
    dict(temperature=0.8, top_k=40, top_p=0.9),
    dict(prompt="human", prompt_tokens=3),
    dict(unit="tokens", size=60),
])
def test_static_cache_path_writes_the_same_corpus(make_model, eos_bias, family, settings):
    """Same seed, same documents: the static path draws for the rows the dynamic one holds.
    size 20 in batches of 8 ends on a short batch, which the static path pads."""
    model = make_model(seed=1, family=family)
    eos_bias(model, 0.3)  # a mix of early ends, late ends and rows cut at max_new_tokens
    human = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]
    settings = {"size": 20, **settings}
    dynamic = sample_corpus(model, cfg(static_cache=False, **settings), EOS, seed=3, human_prompts=human)
    static = sample_corpus(model, cfg(static_cache=True, **settings), EOS, seed=3, human_prompts=human)
    assert static == dynamic
    assert 0 < sum(s.ended for s in dynamic) < len(dynamic)


def test_static_cache_path_with_a_watermark_writes_the_same_corpus(make_model):
    from testbed.curate.watermark import make_processor

    model = make_model(seed=2)
    mark = make_processor(64, torch.device("cpu"), 0.25, 4.0, 15485863)
    dynamic = sample_corpus(model, cfg(size=12, static_cache=False), EOS, seed=0, watermark=mark)
    static = sample_corpus(model, cfg(size=12, static_cache=True), EOS, seed=0, watermark=mark)
    plain = sample_corpus(model, cfg(size=12, static_cache=True), EOS, seed=0)
    assert static == dynamic and static != plain


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_static_cache_sampler_matches_full_forward(make_model, eos_bias, monkeypatch, family, device):
    """Every step's distribution, computed against the fixed-size cache with ended rows still in
    the batch, equals a full no-cache forward over the row's prefix. On CUDA the decode step is the
    compiled CUDA graph."""
    model = make_model(seed=1, family=family).to(device)
    eos_bias(model, 2.5)
    events = []
    ntd, drw = sample_mod.next_token_distribution, sample_mod.draw
    monkeypatch.setattr(sample_mod, "next_token_distribution", lambda *a: events.append(("probs", ntd(*a))) or events[-1][1])
    monkeypatch.setattr(sample_mod, "draw", lambda *a: events.append(("draw", drw(*a))) or events[-1][1])

    batch, n, max_new = 16, 13, 24  # three rows only pad the batch
    prompts = torch.tensor([[EOS, 3 + r % 20, 4 + r % 17] for r in range(batch)], device=device)
    c = cfg(temperature=0.9, top_k=40, top_p=0.95)
    cache = sample_mod.StaticCache(config=model.config, max_cache_len=3 + max_new)
    samples = sample_mod.sample_batch_static(model, prompts, n, c, EOS, max_new,
                                             torch.Generator(device=device).manual_seed(0), cache)

    seqs = [list(p) for p in prompts.tolist()[:n]]
    rows, alive, checked, shrunk = list(range(n)), [True] * n, 0, 0
    for kind, value in events:
        if kind == "probs":
            assert value.shape[0] == len(rows)
            for i, r in enumerate(rows):
                ref_logits = model(input_ids=torch.tensor([seqs[r]], device=device)).logits[:, -1]
                ref = next_token_distribution(ref_logits, c.temperature, c.top_k, c.top_p)
                assert torch.allclose(value[i: i + 1], ref, atol=1e-5), (r, len(seqs[r]))
                checked += 1
            shrunk += len(rows) < n
        else:
            for i, r in enumerate(rows):
                seqs[r].append(int(value[i]))
                alive[i] = alive[i] and int(value[i]) != EOS
            # sample_batch's rule for dropping ended rows, which the static path mirrors in its draws
            if len(rows) - sum(alive) >= sample_mod._COMPACT_AT * len(rows):
                rows, alive = [r for r, a in zip(rows, alive) if a], [True] * sum(alive)
    assert shrunk >= 3 and checked > n * 3
    assert len(samples) == n
    for r, s in enumerate(samples):
        drawn = seqs[r][3:]
        assert s.ended == (EOS in drawn)
        assert s.tokens == (drawn[: drawn.index(EOS)] if s.ended else drawn)


@pytest.mark.parametrize("device", DEVICES)
def test_static_cache_corpus_is_reproducible_in_bf16(make_model, eos_bias, device):
    """What a GPU run does by default (static cache, compiled step on CUDA, under bf16 autocast): the same seed
    writes the same corpus, a short last batch included, and rows end on their own."""
    model = make_model(seed=1).to(device)
    eos_bias(model, 0.3)
    autocast = lambda: torch.autocast(device, dtype=torch.bfloat16)  # noqa: E731
    first, again = (sample_corpus(model, cfg(size=20, static_cache="auto" if device == "cuda" else True), EOS, seed=3,
                                  autocast=autocast) for _ in range(2))
    assert first == again and len(first) == 20
    assert 0 < sum(s.ended for s in first) < 20
