import dataclasses
import re
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.config import Config, diff, load_config, to_dict, to_yaml


def test_defaults_load():
    cfg = load_config(None)
    assert cfg == Config()
    assert (cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p) == (1.0, 0, 1.0)  # pure ancestral
    assert cfg.data.source == "storyworld" and cfg.model.preset == "tiny"


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load_and_round_trip(tmp_path, path):
    cfg = load_config(path)
    (tmp_path / "c.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("source", ["override", "file"])
def test_full_precision_is_fp32_in_files_and_overrides(tmp_path, source):
    # "fp32", not accelerate's "no", which YAML 1.1 would read as false in a file.
    if source == "override":
        cfg = load_config(None, ["train.mixed_precision=fp32"])
    else:
        path = tmp_path / "c.yaml"
        path.write_text("train:\n  mixed_precision: fp32\n")
        cfg = load_config(path)
    assert cfg.train.mixed_precision == "fp32"


def test_command_line_strings_stay_strings():
    # Plain YAML would read --- as null, no as false and 123 as an int.
    cfg = load_config(None, ["data.separator=---", "data.name=no", "run_dir=123", "data.text_field='quoted'"])
    assert (cfg.data.separator, cfg.data.name, cfg.run_dir, cfg.data.text_field) == ("---", "no", "123", "quoted")


def test_nested_overrides():
    cfg = load_config(None, ["model.n_layer=2", "sample.top_p=0.9", "seed=7", "data.separator=<|endoftext|>",
                             "mix.size=fixed", "mix.docs=100", "run_dir=/tmp/x"])
    assert cfg.model.n_layer == 2 and cfg.model.preset == "tiny"
    assert cfg.sample.top_p == 0.9 and cfg.seed == 7 and cfg.mix.docs == 100 and cfg.run_dir == "/tmp/x"
    assert cfg.data.separator == "<|endoftext|>"


def test_int_for_float_is_coerced_and_number_for_str():
    cfg = load_config(None, ["train.lr=1", "data.name=2024"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.name == "2024"


def test_a_whole_number_written_with_an_exponent_is_that_number(tmp_path):
    """train.tokens=1e6 was "expected int, got str": YAML 1.1 reads 1e6 as a string and 1.0e+6 as a float."""
    assert load_config(None, ["train.tokens=1e6", "generations=2.0"]).train.tokens == 1_000_000
    (tmp_path / "c.yaml").write_text("train: {tokens: 1.0e+6, batch_size: 1e1}\n", encoding="utf-8")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.train.tokens, cfg.train.batch_size) == (1_000_000, 10) and isinstance(cfg.train.tokens, int)
    for value in ("1.5", "1e400", "lots"):
        with pytest.raises(TestbedError, match=rf"^train\.tokens=.* has the wrong type: expected int"):
            load_config(None, [f"train.tokens={value}"])


@pytest.mark.parametrize("value", ['""', "' '"])
def test_an_empty_run_dir_is_refused(value):
    """run_dir="$OUT" with OUT unset: a sweep wrote its runs and report into the current folder."""
    with pytest.raises(TestbedError, match=r"^run_dir is empty: give the run a folder of its own"):
        load_config(None, [f"run_dir={value}"])


@pytest.mark.parametrize("key, value, message", [("delta", "1e308", r"must be in \(0, 50\]"), ("delta", "0", r"\(0, 50\]"),
                                                 ("key", "99999999999999999999999", r"must be in \[0, 2\^63\)"),
                                                 ("key", "-1", r"\[0, 2\^63\)")])
def test_watermark_values_torch_cannot_take_are_refused(key, value, message):
    """Each gave a traceback after generation 0 had trained (an overflow in the seed, or in the fp32 logits)."""
    with pytest.raises(TestbedError, match=rf"^sample\.watermark\.{key}=.*{message}"):
        load_config(None, ["sample.watermark.enabled=true", f"sample.watermark.{key}={value}"])


def test_yaml_merge_keys_work_and_a_list_as_a_key_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval:\n  <<: {batch_size: 16, sample_words: 100}\n  sample_words: 200\n", encoding="utf-8")
    cfg = load_config(path)  # the merge was "not valid YAML (could not determine a constructor ...)"
    assert (cfg.eval.batch_size, cfg.eval.sample_words) == (16, 200)
    path.write_text("train:\n  [tokens]: 5\n", encoding="utf-8")  # was a TypeError traceback
    with pytest.raises(TestbedError, match=r"c\.yaml: not valid YAML \(a key must be a name, not a list or a mapping"):
        load_config(path)


def test_a_lab_given_as_a_config_and_a_saved_config_with_a_bad_key_are_named(tmp_path):
    from testbed.config import load_saved
    with pytest.raises(TestbedError, match=r"collapse\.yaml is a lab, not a run's config: run it with `testbed lab run"):
        load_config(Path(__file__).parents[1] / "labs" / "collapse.yaml")
    (tmp_path / "config.yaml").write_text("foo: 1\n", encoding="utf-8")
    with pytest.raises(TestbedError, match=r"config\.yaml \(a run's saved config\): unknown config key foo"):
        load_saved(tmp_path / "config.yaml")


def test_empty_override_value_is_null():
    assert load_config(None, ["data.max_docs=5", "data.max_docs="]).data.max_docs is None


def test_override_beats_file_and_keeps_siblings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\nmodel:\n  preset: nano\n  n_layer: 1\n")
    cfg = load_config(path, ["model.n_layer=2"])
    assert (cfg.seed, cfg.model.preset, cfg.model.n_layer) == (3, "nano", 2)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["data.source=local", "data.path=/data/c.txt", "data.separator=<|endoftext|>",
                             "data.max_docs=10", "run_dir=123", "data.name='yes'", "mix.regime=anchor",
                             "sample.top_p=0.95", "train.lr=0.0005", "model.context=64"])
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(path)
    assert again == cfg
    assert again.run_dir == "123" and again.data.name == "yes"  # strings that YAML would read as int/bool


def test_unknown_top_level_key_names_it_and_the_allowed_keys():
    with pytest.raises(TestbedError) as e:
        load_config(None, ["seeed=1"])
    msg = str(e.value)
    assert "unknown config key seeed" in msg and "did you mean seed?" in msg
    assert "allowed keys: run_dir, seed, generations, data, tokenizer, model, train, sample, mix, curate, eval" in msg


def test_unknown_nested_key_names_it_and_the_allowed_keys():
    with pytest.raises(TestbedError) as e:
        load_config(None, ["model.n_layers=2"])
    msg = str(e.value)
    assert "unknown config key model.n_layers" in msg and "did you mean model.n_layer?" in msg
    assert "allowed keys: model.family, model.preset, model.n_layer, model.n_embd, model.n_head, model.context" in msg


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(TestbedError, match=r"unknown config key train\.learning_rate.*allowed keys: train\.compute, train\.tokens"):
        load_config(path)


def test_unknown_key_without_close_match_has_no_suggestion():
    with pytest.raises(TestbedError) as e:
        load_config(None, ["model.zzzzzz=1"])
    assert "did you mean" not in str(e.value) and "model.zzzzzz" in str(e.value)


@pytest.mark.parametrize("override, needles", [
    ("generations=three", ["generations='three'", "expected int", "got str"]),
    ("train.lr=abc", ["train.lr='abc'", "expected float"]),
    ("seed=true", ["seed=True", "expected int", "got bool"]),
    ("train.tokens=1.5", ["train.tokens=1.5", "expected int", "got float"]),
    ("data.max_docs=many", ["data.max_docs='many'", "expected int"]),
])
def test_wrong_type_names_key_and_expected_type(override, needles):
    with pytest.raises(TestbedError) as e:
        load_config(None, [override])
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_section_given_a_scalar(tmp_path):
    with pytest.raises(TestbedError, match=r"^override 'model=3': model is a section; set its keys one at a time"):
        load_config(None, ["model=3"])
    (tmp_path / "c.yaml").write_text("model: 3\n")
    with pytest.raises(TestbedError, match="model must be a mapping"):
        load_config(tmp_path / "c.yaml")


def test_literal_lists_the_choices():
    with pytest.raises(TestbedError, match=r"mix\.regime='mixed' is not allowed; choose one of: replace, accumulate, anchor"):
        load_config(None, ["mix.regime=mixed"])
    with pytest.raises(TestbedError, match=r"model\.preset.*nano, tiny, small, medium, large"):
        load_config(None, ["model.preset=huge"])


@pytest.mark.parametrize("value", ["1", "0", "1.0"])
def test_a_number_is_not_a_boolean_choice(value):
    """1 == True in Python: accepted, sample.static_cache=1 was stored as 1 and then read as not true."""
    assert load_config(None, ["sample.static_cache=true"]).sample.static_cache is True
    with pytest.raises(TestbedError, match=rf"sample\.static_cache={value} is not allowed; choose one of: auto, true, false"):
        load_config(None, [f"sample.static_cache={value}"])


@pytest.mark.parametrize("override, needle", [
    ("train.tokens=-100", "train.tokens=-100 must be >= 1"),
    ("generations=-1", "generations=-1 must be >= 0"),
    ("data.heldout_docs=0", "data.heldout_docs=0 must be >= 1"),
    ("tokenizer.vocab_size=256", "tokenizer.vocab_size=256 must be >= 257"),
    ("sample.size=0", "sample.size=0 must be >= 1"),
    ("mix.docs=-5", "mix.docs=-5 must be > 0"),
    ("model.n_layer=0", "model.n_layer=0 must be > 0"),
    ("sample.max_new_tokens=-1", "sample.max_new_tokens=-1 must be > 0"),
    ("data.max_docs=0", "data.max_docs=0 must be > 0"),
    ("eval.heldout_docs=-2", "eval.heldout_docs=-2 must be > 0"),
])
def test_negative_sizes_rejected_with_the_key(override, needle):
    with pytest.raises(TestbedError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("train.lr=0", "train.lr"), ("sample.temperature=0", "sample.temperature"), ("sample.top_k=-1", "sample.top_k"),
    ("sample.top_p=0", "sample.top_p"), ("sample.top_p=1.5", "sample.top_p"),
    ("mix.anchor_fraction=1.1", "mix.anchor_fraction"), ("train.warmup=1", "train.warmup"),
    ("train.min_lr_ratio=-0.1", "train.min_lr_ratio"), ("data.separator=''", "data.separator"),
    ("eval.rare_max_freq=0", "eval.rare_max_freq"), ("eval.rare_max_freq=1", "eval.rare_max_freq"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(TestbedError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_generations_stop_where_the_folder_names_do():
    """gen_000 .. gen_999: a thousandth generation would fall outside every glob and report."""
    assert load_config(None, ["generations=999"]).generations == 999
    with pytest.raises(TestbedError, match=r"generations=1000 is too large: at most 999"):
        load_config(None, ["generations=1000"])


@pytest.mark.parametrize("override", [
    "train.lr=inf", "train.lr=1e400", "sample.temperature=nan",  # YAML reads these as text: they said "wrong type"
    "sample.temperature=.nan",
    "train.lr=.nan",
    "sample.top_p=.nan",
    "mix.anchor_fraction=.nan",
    "eval.rare_max_freq=.nan",
])
def test_nan_is_rejected(override):
    with pytest.raises(TestbedError, match=override.split("=")[0].replace(".", r"\.") + r"=\S+ must be a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize("overrides, message", [
    (["sample.size=100", "sample.max_docs=50"], r"sample\.max_docs=50 is below sample\.size=100"),
    (["sample.unit=verified", "mix.size=fixed", "mix.after_curation=true"], r"set curate\.verifier\.enabled=true"),
    (["sample.unit=verified", "curate.verifier.enabled=true"], r"without mix\.after_curation=true"),
    (["mix.after_curation=true"], r"mix\.after_curation=true .* needs mix\.size=fixed"),
])
def test_verified_sampling_needs_the_verifier_and_a_budget_counted_after_curation(overrides, message):
    with pytest.raises(TestbedError, match=message):
        load_config(None, overrides)
    if "sample.unit=verified" in overrides:
        load_config(None, ["sample.unit=verified", "curate.verifier.enabled=true", "mix.size=fixed", "mix.after_curation=true"])


def test_a_classifier_detector_cannot_learn_outside_a_pool_that_holds_the_whole_corpus():
    """mix.after_curation puts all of the newest corpus in the pool: generation 1's classifier would have no model text
    left to learn from, and the run used to stop there, after generation 0, with advice the config already followed."""
    after = ["mix.size=fixed", "mix.after_curation=true", "curate.detector.enabled=true"]
    with pytest.raises(TestbedError, match=r"^curate\.detector\.kind=classifier .* set mix\.after_curation=false, or "
                                           r"curate\.detector\.kind=likelihood$"):
        load_config(None, after)
    load_config(None, [*after, "curate.detector.kind=likelihood"])  # it learns only from human text
    load_config(None, [*after[:2], "curate.detector.enabled=false"])


@pytest.mark.parametrize("kind, key, other", [("likelihood", "threshold=0.7", "fpr"), ("classifier", "fpr=0.1", "threshold")])
def test_a_detector_refuses_the_cut_off_of_the_other_kind(kind, key, other):
    """The classifier cuts at threshold and the likelihood detector at fpr; the other key was taken and never read."""
    with pytest.raises(TestbedError, match=rf"^curate\.detector\.{key} is read by .* kind={kind} cuts at "
                                           rf"curate\.detector\.{other}: set that instead"):
        load_config(None, [f"curate.detector.kind={kind}", f"curate.detector.{key}"])
    load_config(None, [f"curate.detector.kind={kind}", f"curate.detector.{other}=0.25"])


def test_a_source_that_writes_its_own_fresh_text_refuses_a_reserve(monkeypatch):
    """By whether the source has a truth, not by the name storyworld: a new source with one (docs/extending.md)
    took data.fresh_docs out of its training split and never read them."""
    from dataclasses import replace

    import testbed.corpus.sources as sources

    with pytest.raises(TestbedError, match=r"^data\.fresh_docs is for corpora without a generator: storyworld writes"):
        load_config(None, ["data.fresh_docs=50"])
    local = ["data.source=local", "data.path=stories.txt", "data.fresh_docs=50"]
    assert load_config(None, local).data.fresh_docs == 50
    monkeypatch.setitem(sources.SOURCES, "local", replace(sources.SOURCES["local"], truth=sources._storyworld_truth))
    with pytest.raises(TestbedError, match=r"^data\.fresh_docs is for corpora without a generator: local writes"):
        load_config(None, local)


def test_local_source_needs_a_path():
    with pytest.raises(TestbedError, match=r"data\.path is not set"):
        load_config(None, ["data.source=local"])


@pytest.mark.parametrize("overrides, message", [
    (["data.path=stories.txt"], r"^data\.path=stories\.txt is read by data\.source=local only, and data\.source=storyworld "
                                r"would train on its own stories: set data\.source=local, or remove data\.path$"),
    (["data.source=hub", "data.path=stories.txt"], r"data\.source=hub would train on data\.name"),
    (["mix.docs=500"], r"^mix\.docs=500 is the budget of mix\.size=fixed, and mix\.size=grow trains on the whole pool: "
                       r"set mix\.size=fixed, or remove mix\.docs$"),
])
def test_a_key_the_rest_of_the_config_would_not_read_is_refused(overrides, message):
    """Each was taken and ignored: data.path alone trained on storyworld without a word."""
    with pytest.raises(TestbedError, match=message):
        load_config(None, overrides)
    load_config(None, ["mix.docs=500", "mix.size=fixed"])


@pytest.mark.parametrize("override", ["foo", "=3", ""])
def test_override_not_key_value(override):
    with pytest.raises(TestbedError, match="is not key=value"):
        load_config(None, [override])


def test_override_into_a_scalar_is_not_a_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\n")
    with pytest.raises(TestbedError, match=r"override 'seed\.x=1': seed is not a section"):
        load_config(path, ["seed.x=1"])


@pytest.mark.parametrize("overrides, message", [
    (["train={tokens: 5, lr: 0.1}"], "override 'train={tokens: 5, lr: 0.1}': train is a section; set its keys one at a "
                                     "time, such as train.tokens=5 train.lr=0.1"),
    (["data=5", "data.docs=200"], "override 'data=5': data is a section; set its keys one at a time, such as "
                                  "data.source=..."),
    (["curate.whitelist={}"], "override 'curate.whitelist={}': curate.whitelist is a section; set its keys one at a "
                              "time, such as curate.whitelist.enabled=..."),
    # YAML reads {tokens:5} as the key "tokens:5" with no value: the example was train.tokens:5=None.
    (["train={tokens:5}"], "override 'train={tokens:5}': train is a section; set its keys one at a time, such as "
                           "train.compute=..."),
])
def test_an_override_of_a_whole_section_is_refused_not_laid_over_the_files_keys(overrides, message):
    """train={tokens: 5} once replaced the whole section: the quickstart's lr and batch size fell back to the defaults."""
    with pytest.raises(TestbedError, match=f"^{re.escape(message)}$"):
        load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml", overrides)


def test_override_into_an_empty_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\nmix:\n#  regime: anchor\n")
    assert load_config(path).mix.regime == "replace"  # the empty section itself is accepted
    assert load_config(path, ["mix.regime=accumulate"]).mix.regime == "accumulate"


def test_config_file_errors(tmp_path):
    with pytest.raises(TestbedError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TestbedError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(TestbedError, match="top level must be a mapping"):
        load_config(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_diff_lists_dotted_keys_that_differ():
    a = to_dict(Config())
    b = to_dict(load_config(None, ["generations=5", "model.n_layer=2", "sample.top_p=0.9"]))
    assert diff(a, b) == ["generations", "model.n_layer", "sample.top_p"]
    assert diff(a, a) == []
    assert diff({"x": {"y": 1}}, {"x": {"y": 1, "z": 2}, "w": 0}) == ["w", "x.z"]


def test_to_dict_is_plain_and_complete():
    d = to_dict(Config())
    assert set(d) == {f.name for f in dataclasses.fields(Config)}
    assert d["model"] == {"family": "gpt2", "preset": "tiny", "n_layer": None, "n_embd": None, "n_head": None, "context": None}


def test_base_file_supplies_every_key_the_file_does_not_set(tmp_path):
    (tmp_path / "base.yaml").write_text("generations: 7\nmix:\n  regime: anchor\n  anchor_fraction: 0.3\n")
    (tmp_path / "top.yaml").write_text("base: base.yaml\nmix:\n  anchor_fraction: 0.5\n")
    cfg = load_config(tmp_path / "top.yaml", ["seed=3"])
    assert (cfg.generations, cfg.mix.regime, cfg.mix.anchor_fraction, cfg.seed) == (7, "anchor", 0.5, 3)


def test_base_cycle_and_missing_base_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(TestbedError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    # The file that names the base, not only the base: the user has to know which file to fix.
    with pytest.raises(TestbedError, match=r"c\.yaml: base=nowhere\.yaml: no such file \(.*nowhere\.yaml; the path is "
                                           r"relative to this file\)$"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: ''\n")
    with pytest.raises(TestbedError, match=r"d\.yaml: base='' must be the path of another config file"):
        load_config(tmp_path / "d.yaml")


def test_list_keys_take_yaml_lists_from_the_command_line():
    cfg = load_config(None, ["curate.whitelist.sources=[human, synthetic:gen_001]"])
    assert cfg.curate.whitelist.sources == ["human", "synthetic:gen_001"]
    with pytest.raises(TestbedError, match=r"curate.whitelist.sources='human' has the wrong type: expected a list"):
        load_config(None, ["curate.whitelist.sources=human"])


@pytest.mark.parametrize("override, message", [
    ("curate.dedup.threshold=1.5", r"curate.dedup.threshold=1.5 must be in \[0, 1\]"),
    ("curate.perplexity.high=0", "curate.perplexity.low=0.0 must be below curate.perplexity.high=0.0"),
    ("curate.watermark.enabled=true", "set sample.watermark.enabled=true"),
    ("sample.watermark.gamma=1", r"sample.watermark.gamma=1.0 must be in \(0, 1\)"),
    ("curate.detector.kind=oracle", "choose one of: classifier, likelihood"),
    ("curate.whitelist.sources=[]", "curate.whitelist.sources is empty"),
    # Each was taken: "Human" kept every synthetic document and dropped every human one without a word.
    ("curate.whitelist.sources=[Human,synthetic]", r"^curate\.whitelist\.sources: 'Human' is not a source a document "
                                                   r"carries; use human, synthetic"),
    ("curate.whitelist.sources=[synthetic:gen_2]", "'synthetic:gen_2' is not a source"),
])
def test_bad_curation_settings_name_the_key(override, message):
    extra = ["curate.whitelist.enabled=true"] if "sources" in override else []
    with pytest.raises(TestbedError, match=message):
        load_config(None, [override, *extra])


def test_every_strategy_config_loads_on_top_of_the_quickstart():
    from pathlib import Path

    from testbed.config import diff, to_dict

    root = Path(__file__).resolve().parents[1] / "configs"
    quickstart = to_dict(load_config(root / "quickstart.yaml"))
    names = sorted(p.stem for p in (root / "strategies").glob("*.yaml"))
    assert {"none", "accumulate", "anchor", "perplexity-filter", "verified", "detector", "whitelist", "watermark"} <= set(names)
    for name in names:
        cfg = load_config(root / "strategies" / f"{name}.yaml")
        assert cfg.run_dir == f"runs/strategies/{name}"
        changed = diff(quickstart, to_dict(cfg))
        # A strategy changes curation, the mix and the compute policy that goes with it (accumulate
        # as Gerstgrasser et al. ran it grows with the data), never the model, its optimizer or the evaluation.
        assert all(k.split(".")[0] in ("run_dir", "mix", "curate", "sample") or k in ("train.compute", "train.epochs")
                   for k in changed), (name, changed)


def test_every_shipped_config_shares_the_one_rare_band_rule():
    from testbed.config import EvalConfig
    from testbed.corpus.storyworld import DEFAULT_RARE_MAX_PROB

    # Figures compare across configs only where the rare band is the same rule.
    assert EvalConfig().rare_max_freq == DEFAULT_RARE_MAX_PROB
    root = Path(__file__).resolve().parents[1] / "configs"
    for path in [*CONFIGS, *sorted((root / "strategies").glob("*.yaml"))]:
        ev = load_config(path).eval
        assert (ev.rare_max_freq, ev.rare_quantile) == (EvalConfig().rare_max_freq, None), path.name


def test_track_is_off_by_default_and_takes_a_list_of_trackers():
    assert load_config(None).track == []
    assert load_config(None, ["track=[tensorboard, wandb]"]).track == ["tensorboard", "wandb"]


@pytest.mark.parametrize("override, message", [
    ("track=[tensorboard, mlflow]", r"track\[1\]='mlflow' is not allowed; choose one of: tensorboard, wandb"),
    ("track=[all]", r"track\[0\]='all' is not allowed; choose one of: tensorboard, wandb"),
    ("track=tensorboard", r"track='tensorboard' has the wrong type: expected a list such as \[tensorboard\]"),
])
def test_unknown_trackers_are_rejected_naming_the_allowed_ones(override, message):
    with pytest.raises(TestbedError, match=message):
        load_config(None, [override])


def test_floats_in_exponent_form_without_a_dot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval:\n  rare_max_freq: 5e-5\n")
    assert load_config(path, ["train.lr=3e-4"]).eval.rare_max_freq == 5e-5
    assert load_config(None, ["train.lr=3e-4"]).train.lr == 3e-4
    with pytest.raises(TestbedError, match=r"train.lr='fast' has the wrong type: expected float"):
        load_config(None, ["train.lr=fast"])
    for word in ("inf", "nan", "-inf"):  # a number, spelt as YAML reads text: refused as one, not as a type
        with pytest.raises(TestbedError, match=rf"^train\.lr={word} must be a finite number$"):
            load_config(None, [f"train.lr={word}"])


@pytest.mark.parametrize("override", ["train.lr=.inf", "sample.temperature=.nan", "eval.kl_alpha=-.inf"])
def test_non_finite_numbers_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(TestbedError, match=rf"{key}=(-?inf|nan) must be a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize("override, kind", [("run_dir=", "str"), ("generations=", "int"), ("train.lr=~", "float")])
def test_a_key_given_no_value_says_so_and_how_to_fix_it(override, kind):
    key = override.partition("=")[0]
    with pytest.raises(TestbedError, match=rf"^{re.escape(key)} is empty: give it a value \({kind}\), or leave it out for "
                                           r"its default$"):
        load_config(None, [override])
