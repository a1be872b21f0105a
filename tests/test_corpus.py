import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testbed import TestbedError
from testbed.config import DataConfig
from testbed.corpus.sources import load_documents, source_name
from testbed.corpus.split import split_documents
from testbed.seeds import stage_seed

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def local(path, **kw):
    return load_documents(DataConfig(source="local", path=str(path), **kw), seed=0)


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- local files -------------------------------------------------------------

def test_txt_by_line_strips_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "c.txt", "  first doc \n\n second\n   \nthird café\n")
    assert local(path) == ["first doc", "second", "third café"]


def test_txt_by_paragraph(tmp_path):
    path = write(tmp_path, "c.txt", "para one\nstill one\n\npara two\n\n\n\npara three\n")
    assert local(path, separator="paragraph") == ["para one\nstill one", "para two", "para three"]


def test_txt_by_paragraph_a_line_of_spaces_or_tabs_is_blank_too(tmp_path):
    """As an editor shows it: a line holding only spaces or tabs parts paragraphs (datasets splits at \\n\\n only)."""
    path = write(tmp_path, "c.txt", "para one\nstill one\n \npara two\n\t\npara three\r\n \r\npara four\n\n\n\npara five\n")
    assert local(path, separator="paragraph") == ["para one\nstill one", "para two", "para three", "para four",
                                                  "para five"]


def test_txt_by_literal_separator(tmp_path):
    path = write(tmp_path, "c.txt", "a b\nc<|endoftext|>d e<|endoftext|>  \n<|endoftext|>f")
    assert local(path, separator="<|endoftext|>") == ["a b\nc", "d e", "f"]


def test_txt_whose_separator_never_occurs_says_so(tmp_path):
    # Else the whole file is one document, and the split blames data.heldout_docs.
    path = write(tmp_path, "c.txt", "a b\nc d\n")
    with pytest.raises(TestbedError, match=r"^data\.separator='<\|eot\|>' does not occur in .*c\.txt, so the whole "
                                           r"file would be one document; use line, paragraph or a string that parts"):
        local(path, separator="<|eot|>")


def test_a_missing_separator_is_found_before_a_sweeps_first_run(tmp_path):
    """check_file (what a sweep or a lab calls for every file before any run) found it only at that run's turn."""
    from testbed.corpus.sources import check_file

    path = write(tmp_path, "c.txt", "a b\nc d\n")
    with pytest.raises(TestbedError, match=r"^data\.separator='<\|eot\|>' does not occur in .*c\.txt"):
        check_file(DataConfig(source="local", path=str(path), separator="<|eot|>"))
    check_file(DataConfig(source="local", path=str(path), separator="line"))
    cut = write(tmp_path, "cut.txt", "x" * ((1 << 20) - 3) + "<|eot|>y")  # the separator spans the first MiB's end
    check_file(DataConfig(source="local", path=str(cut), separator="<|eot|>"))
    crlf = write(tmp_path, "crlf.txt", "a\r\n--\r\nb")  # read with its line ends made \n, as loading reads it
    check_file(DataConfig(source="local", path=str(crlf), separator="\n--\n"))


def test_txt_reads_no_text_field(tmp_path):
    # A .txt file has no fields: data.text_field, set for another format, is not read there.
    path = write(tmp_path, "c.txt", "one\ntwo\n")
    assert local(path, text_field="story") == ["one", "two"]


def test_jsonl_with_text_field(tmp_path):
    rows = [{"body": "one", "id": 1}, {"body": "  two  ", "id": 2}, {"body": "", "id": 3}, {"body": "drei ü", "id": 4}]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert local(path, text_field="body") == ["one", "two", "drei ü"]


def test_parquet_with_text_field(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"story": ["alpha", " beta ", "gamma"], "n": [1, 2, 3]}), path)
    assert local(path, text_field="story") == ["alpha", "beta", "gamma"]


def test_json_array_and_upper_case_suffix(tmp_path):
    path = write(tmp_path, "c.json", json.dumps([{"text": "a"}, {"text": "b"}]))
    assert local(path) == ["a", "b"]
    path = write(tmp_path, "C.TXT", "x<|endoftext|>y")
    assert local(path, separator="<|endoftext|>") == ["x", "y"]


@pytest.mark.parametrize("odd, what", [(42, "number"), ({"a": 1}, "object"), (["x"], "array")])
def test_a_json_array_with_one_value_that_is_not_text_names_the_row(tmp_path, odd, what):
    """datasets reads such a column as JSON text: every good story came back quoted and escaped, with no error."""
    rows = [{"text": f'Story {i}: she said "hi".'} for i in range(5)] + [{"text": odd}]
    path = write(tmp_path, "c.json", json.dumps(rows))
    with pytest.raises(TestbedError, match=rf"^data\.text_field=text: row 6 of .*c\.json holds {what}, not text; "):
        local(path)
    path = write(tmp_path, "d.json", json.dumps(rows[:5]))
    assert local(path)[0] == 'Story 0: she said "hi".'


def test_a_literal_separator_with_windows_line_ends_matches_a_crlf_file(tmp_path):
    """The text is read with its line ends made "\n": "\r\n\r\n" never occurred, and the run said so."""
    path = write(tmp_path, "c.txt", b"one story\r\nstill one\r\n\r\nanother\r\n")
    assert local(path, separator="\r\n\r\n") == ["one story\nstill one", "another"]


def test_corrupt_parquet(tmp_path):
    path = write(tmp_path, "c.parquet", b"not parquet at all")
    with pytest.raises(TestbedError, match=r"data\.path=.*c\.parquet: could not be read as parquet"):
        local(path)
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(TestbedError, match=r"empty\.parquet: the corpus is empty \(no rows\)"):
        local(path)


def test_max_docs_takes_the_first_n(tmp_path):
    path = write(tmp_path, "c.txt", "".join(f"doc {i}\n" for i in range(50)))
    assert local(path, max_docs=3) == ["doc 0", "doc 1", "doc 2"]


def test_missing_file(tmp_path):
    with pytest.raises(TestbedError, match=r"data\.path=.*nope\.txt: file not found"):
        local(tmp_path / "nope.txt")


def test_unsupported_suffix(tmp_path):
    path = write(tmp_path, "c.csv", "a,b\n")
    with pytest.raises(TestbedError, match=r"c\.csv: unsupported suffix '\.csv'; use one of \.txt, \.jsonl"):
        local(path)


@pytest.mark.parametrize("name", ["c.txt", "c.jsonl"])
def test_non_utf8_names_the_offset(tmp_path, name):
    path = write(tmp_path, name, b"abc\ndef \xff rest\n")  # 0xff at byte 8
    with pytest.raises(TestbedError, match=rf"{name}: not UTF-8 \(invalid byte at offset 8\)"):
        local(path)


def test_non_utf8_truncated_at_the_end(tmp_path):
    path = write(tmp_path, "c.txt", "ok é".encode()[:-1])  # half of a 2-byte character
    with pytest.raises(TestbedError, match="not UTF-8 .*truncated"):
        local(path)


def test_non_utf8_offset_across_the_chunk_boundary(tmp_path):
    data = b"a" * ((1 << 20) - 1) + b"\xc3(" + b"b" * 10  # 0xc3 needs a continuation byte; '(' is not one
    with pytest.raises(UnicodeDecodeError) as real:
        data.decode("utf-8")
    assert real.value.start == (1 << 20) - 1
    path = write(tmp_path, "c.txt", data)
    with pytest.raises(TestbedError, match=rf"invalid byte at offset {(1 << 20) - 1}\)"):
        local(path)


@pytest.mark.parametrize("name, content", [("c.txt", "\n  \n\t\n"), ("c.jsonl", '{"text": "  "}\n')])
def test_empty_corpus(tmp_path, name, content):
    path = write(tmp_path, name, content)
    with pytest.raises(TestbedError, match=r"c\.(txt|jsonl): the corpus is empty.*data\.separator and data\.text_field"):
        local(path)


def test_missing_text_field_lists_the_fields(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"body": "x", "title": "y"}\n')
    with pytest.raises(TestbedError, match=r"data\.text_field=text: no such field in .*c\.jsonl; fields: body, title"):
        local(path)


def test_missing_text_field_in_parquet(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"story": ["alpha"]}), path)
    with pytest.raises(TestbedError, match=r"data\.text_field=text: .*fields: story"):
        local(path)


def test_non_text_field(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"text": 5}\n')
    with pytest.raises(TestbedError, match=r"data\.text_field=text: expected text, found int"):
        local(path)


def test_malformed_jsonl_is_a_testbed_error(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"text": "ok"}\n{"text": "no closing brace"\n')
    with pytest.raises(TestbedError, match=r"data\.path=.*c\.jsonl"):
        local(path)


def test_hub_offline_says_so_and_names_the_offline_options():
    data = DataConfig(source="hub", name="testbed-tests/no-such-dataset")
    with pytest.raises(TestbedError) as e:
        load_documents(data, seed=0)
    msg = str(e.value)
    assert "data.name=testbed-tests/no-such-dataset" in msg
    assert "Hugging Face Hub could not be reached" in msg
    assert "data.source=storyworld" in msg and "data.source=local data.path=FILE" in msg


def test_source_name():
    assert source_name(DataConfig(source="hub", name="a/b")) == "hub:a/b"
    assert source_name(DataConfig(source="local", path="/x/y/c.txt")) == "local:c.txt"
    assert source_name(DataConfig()) == "storyworld"


# --- split -------------------------------------------------------------------

DOCS = [f"document {i}" for i in range(20)]


def test_split_is_disjoint_covering_and_deterministic():
    s = split_documents(DOCS, 5, seed=1, source="local:c.txt")
    assert len(s["heldout"]) == 5 and len(s["train"]) == 15
    assert not set(s["heldout"]) & set(s["train"])
    assert sorted(s["heldout"] + s["train"]) == list(range(20))
    assert s["heldout"] == sorted(s["heldout"]) and s["train"] == sorted(s["train"])
    assert (s["source"], s["documents"]) == ("local:c.txt", 20)
    assert split_documents(DOCS, 5, seed=1, source="local:c.txt") == s
    assert split_documents(DOCS, 5, seed=2, source="local:c.txt")["heldout"] != s["heldout"]


def test_split_checksum_tracks_the_corpus():
    a = split_documents(DOCS, 5, seed=1, source="x")["sha256"]
    assert split_documents(DOCS[:-1] + ["changed"], 5, seed=1, source="x")["sha256"] != a
    # document boundaries count: ["ab", "c"] is not ["a", "bc"]
    assert (split_documents(["ab", "c"], 1, 0, "x")["sha256"] != split_documents(["a", "bc"], 1, 0, "x")["sha256"])


@pytest.mark.parametrize("heldout", [20, 21])
def test_split_needs_training_documents(heldout):
    with pytest.raises(TestbedError, match=rf"data\.heldout_docs={heldout} leaves no training documents.*has 20"):
        split_documents(DOCS, heldout, seed=0, source="x")


def test_a_split_that_max_docs_made_too_small_names_it(tmp_path):
    """A corpus cut by data.max_docs is not one to replace: the error names the cap, and raising it is the fix."""
    from testbed.config import load_config
    from testbed.corpus.human import human_corpus
    (tmp_path / "c.txt").write_text("\n".join(f"story {i}." for i in range(50)) + "\n", encoding="utf-8")
    base = ["data.source=local", f"data.path={tmp_path / 'c.txt'}", "data.heldout_docs=20"]
    with pytest.raises(TestbedError, match=r"has 20 \(the first data\.max_docs=20\); lower data\.heldout_docs, or "
                                           r"raise data\.max_docs$"):
        human_corpus(load_config(None, [*base, "data.max_docs=20"]))
    with pytest.raises(TestbedError, match=r"has 50; lower data\.heldout_docs, or use a larger corpus$"):
        human_corpus(load_config(None, [*base, "data.heldout_docs=50"]))
    assert len(human_corpus(load_config(None, [*base, "data.max_docs=30"])).train) == 10


def test_split_removes_exact_duplicates_before_splitting():
    # 12 distinct texts; copies (some differing only in surrounding whitespace) of 0, 3 and 7
    docs = [f"text {i}" for i in range(12)] + ["text 0", " text 3\n", "text 7", "text 0", "text 3"]
    for seed in range(20):
        s = split_documents(docs, 4, seed=seed, source="x")
        held, train = {docs[i].strip() for i in s["heldout"]}, {docs[i].strip() for i in s["train"]}
        assert s["duplicates"] == 5 and s["documents"] == 17
        assert not held & train and held | train == {f"text {i}" for i in range(12)}
        assert len(s["heldout"]) == 4 and len(s["train"]) == 8  # each text once, at its first occurrence
        assert max(s["heldout"] + s["train"]) < 12
    assert s["sha256"] != split_documents(docs[:12], 4, seed=0, source="x")["sha256"]  # the corpus as loaded
    assert split_documents(DOCS, 5, seed=1, source="x")["duplicates"] == 0
    with pytest.raises(TestbedError, match=r"has 12 once 5 exact duplicates are removed"):
        split_documents(docs, 12, seed=0, source="x")


# --- the real shared corpus ----------------------------------------------------

def test_shared_tinyshakespeare_split_shares_no_text():
    path = SHARED / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path} (../shared/data is absent)")
    docs = local(path, separator="paragraph")
    s = split_documents(docs, 400, seed=0, source="local:tinyshakespeare.txt")
    held, train = [docs[i].strip() for i in s["heldout"]], [docs[i].strip() for i in s["train"]]
    assert not set(held) & set(train)
    assert len(set(held + train)) == len(held + train) == len(docs) - s["duplicates"]
    assert s["duplicates"] == len(docs) - len({d.strip() for d in docs}) > 0  # 74 repeated paragraphs

def test_shared_tinystories_by_paragraph():
    path = SHARED / "tinystories-sample.txt"
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path} (../shared/data is absent)")
    text = path.read_text(encoding="utf-8")
    expected = [p.strip() for p in text.split("\n\n") if p.strip()]
    docs = local(path, separator="paragraph")
    assert docs == expected and len(docs) > 1000
    assert docs[0].startswith("One day, a little girl named Lily found a needle")
    assert local(path, separator="paragraph", max_docs=10) == expected[:10]
    s = split_documents(docs, 100, seed=0, source=source_name(DataConfig(source="local", path=str(path))))
    assert s["source"] == "local:tinystories-sample.txt" and len(s["train"]) == len(docs) - 100 - s["duplicates"]


def test_fresh_reserve_is_disjoint_from_training_and_held_out_and_leaves_the_rest_alone():
    docs = [f"doc {i}" for i in range(100)]
    plain = split_documents(docs, 10, seed=3, source="x")
    reserved = split_documents(docs, 10, seed=3, source="x", fresh=25)
    assert reserved["heldout"] == plain["heldout"] and len(reserved["fresh"]) == 25
    assert not set(reserved["fresh"]) & (set(reserved["train"]) | set(reserved["heldout"]))
    assert sorted(reserved["train"] + reserved["fresh"]) == plain["train"]
    with pytest.raises(TestbedError, match=r"data.heldout_docs=10 \+ data.fresh_docs=90 leaves no training documents"):
        split_documents(docs, 10, seed=3, source="x", fresh=90)


def test_storyworld_fresh_stories_are_new_and_differ_by_generation():
    from testbed.config import load_config
    from testbed.corpus.fresh import fresh_texts

    cfg = load_config(None, ["data.docs=300", "mix.regime=anchor", "mix.anchor_set=fresh"])
    training = set(load_documents(cfg.data, stage_seed(cfg.seed, 0, "corpus")))
    one, two = fresh_texts(cfg, [], 300, 1, 50), fresh_texts(cfg, [], 300, 2, 50)
    assert len(one) == len(two) == 50 and not (set(one) | set(two)) & training and one != two


# --- the source registry and the truth interface -----------------------------------

class CoinWorld:
    """A test-only generator: 'heads .' or 'tails .', with known probabilities."""
    P = {"heads .": 0.75, "tails .": 0.25}

    def sample(self, n, seed):
        import random
        rng = random.Random(seed)
        return rng.choices(list(self.P), weights=list(self.P.values()), k=n)

    def sample_with_logprob(self, n, seed):
        import math
        return [(t, math.log(self.P[t])) for t in self.sample(n, seed)]

    def rare_words(self):
        return {"tails": 0.125}

    def expected_words_per_story(self):
        return 1.0

    def is_valid(self, text):
        return text in self.P

    is_grammatical = is_valid

    def valid_prefix(self, text):
        return 1.0 if text in self.P else 0.0


def test_a_registered_source_that_fails_while_read_is_named_by_its_source(monkeypatch):
    from testbed.corpus import sources

    def rows(data, seed):
        yield {"text": "a story"}
        raise RuntimeError("row 2 broken")
    monkeypatch.setitem(sources.SOURCES, "flaky", sources.Source(rows))
    with pytest.raises(TestbedError, match=r"^data\.source=flaky: could not be read after 1 documents "
                                           r"\(RuntimeError: row 2 broken\)$"):
        load_documents(DataConfig(source="flaky"), seed=0)


def test_a_registered_source_with_a_truth_feeds_loading_fresh_text_and_the_metrics(monkeypatch):
    from datasets import Dataset

    from testbed.config import load_config
    from testbed.corpus import sources
    from testbed.corpus.fresh import fresh_texts
    from testbed.metrics.suite import Evaluator
    from testbed.tokenizer import train_tokenizer

    def load(data, seed):
        return Dataset.from_dict({data.text_field: CoinWorld().sample(data.docs, seed)})
    monkeypatch.setitem(sources.SOURCES, "coin", sources.Source(load, CoinWorld))
    cfg = load_config(None, ["data.docs=40", "eval.truth_docs=5", "eval.sample_words=4"])
    cfg.data.source = "coin"  # DataConfig.source names the shipped sources; the registry is what loading reads

    docs = load_documents(cfg.data, seed=3)
    assert docs == CoinWorld().sample(40, 3)
    assert fresh_texts(cfg, [], len(docs), 1, 6) == CoinWorld().sample(6, stage_seed(cfg.seed, 1, "fresh"))
    ev = Evaluator(cfg, train_tokenizer(docs, 50), docs, docs[:4])
    assert ev.truth_nll == [-lp for _, lp in CoinWorld().sample_with_logprob(5, 0)]
    row = ev.corpus_metrics(["heads .", "heads .", "tails", "tails ."], seed=0)
    assert row["validity_rate"] == 3 / 4 and row["valid_prefix"] == 3 / 4
    assert row["true_tail_recall"] == 1.0  # "tails" occurs; the only true rare word
    assert sources.truth(cfg.data).__class__ is CoinWorld
    assert source_name(cfg.data) == "coin"  # its provenance in split.json and the run's first line
    assert sources.truth(DataConfig(source="local", path="x.txt")) is None


def test_every_source_the_config_accepts_is_registered_and_back():
    # A name added to DataConfig.source but not to SOURCES would pass validation and fail with a KeyError.
    import typing

    from testbed.corpus.sources import SOURCES
    assert set(typing.get_args(DataConfig.__annotations__["source"])) == set(SOURCES)


def test_a_source_registered_in_one_place_only_is_refused_at_import_with_both_lists():
    from testbed.config import check_registry
    from testbed.corpus.sources import SOURCES

    with pytest.raises(TypeError, match="^data.source: the registry has fables, hub, local, storyworld and the config's "
                                        "Literal hub, local, storyworld; add the name to both"):
        check_registry({**SOURCES, "fables": None}, DataConfig, "data.source")
    check_registry(SOURCES, DataConfig, "data.source")


def test_human_documents_longer_than_a_sample_can_be_are_noted_with_what_becomes_of_their_imitations():
    # Books cut into 2,000-token documents against a 256-token context: 89% of generation 0's samples were cut off
    # and generation 1 trained on the 11% that ended early, 31 passes over them, without a word.
    from testbed.config import load_config
    from testbed.corpus.human import check_fits

    cfg = load_config(None, ["model.preset=nano", "model.context=64"])
    short, long = [[5] * 30] * 6, [[5] * 63] * 2  # 63 tokens and the end token: one more than the 63 a sample writes
    assert check_fits(cfg, short + long[:1]) == []
    [note] = check_fits(cfg, short + long)
    assert note == ("note: 25% of the human training documents are longer than a sample can be (63 tokens; median "
                    "document 30): samples that imitate them are cut off and left out of the next generation's pool "
                    "(mix.keep_unfinished=false), which then holds the samples that ended early; split the corpus "
                    "into shorter documents (data.separator) or raise model.context")
    kept = load_config(None, ["model.preset=nano", "model.context=64", "mix.keep_unfinished=true"])
    assert "are cut off and kept unfinished (mix.keep_unfinished=true);" in check_fits(kept, long)[0]
    prompted = load_config(None, ["model.preset=nano", "model.context=64", "sample.prompt=human",
                                  "sample.prompt_tokens=8"])
    assert check_fits(prompted, short + long) == [note]  # a prompt is the document's start: the room is the same


def test_a_txt_read_by_paragraphs_that_yields_too_few_documents_names_the_separator(tmp_path):
    from testbed.config import load_config
    from testbed.corpus.human import human_corpus

    path = tmp_path / "lines.txt"
    path.write_text("the cat sat.\nthe dog ran.\na bird sang.\n")
    cfg = load_config(None, ["data.source=local", f"data.path={path}", "data.separator=paragraph",
                             "data.heldout_docs=1"])
    with pytest.raises(TestbedError, match=rf"the corpus has 1; lower data.heldout_docs, or use a larger corpus; or, if "
                                           rf"{path} holds one document a line, data.separator=line \(data.separator="
                                           rf"paragraph read 1 document\(s\) from it\)$"):
        human_corpus(cfg)
    assert len(human_corpus(load_config(None, ["data.source=local", f"data.path={path}", "data.heldout_docs=1"])).train) == 2


@pytest.mark.parametrize("rows, what", [(["a story", "another"], "string"), ([None], "null"), ([[1]], "array")])
def test_a_json_array_of_other_than_objects_says_so_and_not_to_change_the_text_field(tmp_path, rows, what):
    path = write(tmp_path, "c.json", json.dumps(rows))
    with pytest.raises(TestbedError, match=rf"^data\.path=.*c\.json: row 1 is a JSON {what}, not an object with a "
                                           r"'text' field; give an array of objects \(\{"):
        local(path)


def test_a_hub_name_that_is_a_file_points_to_the_local_source(tmp_path):
    path = write(tmp_path, "stories.jsonl", json.dumps({"text": "a"}) + "\n")
    with pytest.raises(TestbedError, match=rf"^data\.name={path}: a file; data\.source=hub reads a Hub dataset or a "
                                           rf"dataset folder: for a file, data\.source=local data\.path={path}$"):
        load_documents(DataConfig(source="hub", name=str(path)), 0)


def test_a_reserve_the_run_never_reads_is_noted_and_one_it_reads_is_not():
    from testbed.config import load_config
    from testbed.corpus.fresh import check_reserve

    local = ["data.source=local", "data.path=x.txt", "data.fresh_docs=500", "generations=2", "mix.size=fixed"]
    [note] = check_reserve(load_config(None, local), 1000)
    assert note == ("note: data.fresh_docs=500 documents are set aside and this run reads none of them "
                    "(mix.regime=anchor with mix.anchor_set=fresh does); they are left out of its training split so "
                    "that it is split as runs that read them are")
    fresh = [*local, "mix.regime=anchor", "mix.anchor_set=fresh", "mix.anchor_fraction=0.1"]
    assert check_reserve(load_config(None, fresh), 1000) == []
    assert check_reserve(load_config(None, [*fresh, "mix.anchor_fraction=0"]), 1000) == [note]
    assert check_reserve(load_config(None, local[:2]), 1000) == []  # nothing set aside


def test_a_path_with_glob_characters_reads_that_file_and_no_other(tmp_path):
    """datasets reads data_files as a pattern: "corpus[1].txt" read corpus1.txt, and "star*.txt" every match."""
    write(tmp_path, "corpus[1].txt", "the right one\nand its second line\n")
    write(tmp_path, "corpus1.txt", "the wrong one\n")
    assert local(tmp_path / "corpus[1].txt") == ["the right one", "and its second line"]
    write(tmp_path, "star*.txt", "starred\n")
    write(tmp_path, "starX.txt", "another file\n")
    assert local(tmp_path / "star*.txt") == ["starred"]


def test_json_nested_past_the_stack_is_one_line(tmp_path):
    path = write(tmp_path, "deep.json", "[" * 100_000)
    with pytest.raises(TestbedError, match=r"^data\.path=.*deep\.json: not valid JSON \(RecursionError: maximum recursion"):
        local(path)
