"""Typed run configuration: YAML keys are the dataclass field names.

A config is validated once, when it is built, so a typo or a wrong type is
reported before anything is trained or written. The resolved config is saved
with the run and is its identity.
"""
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from testbed import TestbedError, first_line
from testbed.curate import CurateConfig, curate_config  # each step's keys and checks live in its file; see testbed/curate/step.py


@dataclass
class DataConfig:
    source: Literal["storyworld", "local", "hub"] = "storyworld"
    name: str = "roneneldan/TinyStories"  # hub dataset, with source=hub
    subset: str | None = None  # hub: the dataset's configuration, where it has several (wikitext-103-raw-v1)
    split: str = "train"  # hub split
    path: str | None = None  # local file (.txt, .jsonl, .json, .parquet), with source=local
    text_field: str = "text"  # column holding the text in .jsonl / .parquet / hub rows
    separator: str = "line"  # .txt documents: "line", "paragraph" (blank line) or a literal string such as <|endoftext|>
    max_docs: int | None = None  # take the first N documents (hub: streamed, so only N are downloaded)
    docs: int = 4000  # storyworld: how many stories to write
    heldout_docs: int = 400  # documents held out from training, for evaluation
    # local / hub: documents set aside, never trained on or evaluated, as the new human text of
    # mix.anchor_set=fresh (each generation its own). storyworld writes new stories instead.
    fresh_docs: int = 0


@dataclass
class TokenizerConfig:
    # bpe: byte-level BPE, any text; word: one token per word, so a rare word is
    # one token (storyworld and other closed vocabularies; see testbed/tokenizer.py).
    kind: Literal["bpe", "word"] = "bpe"
    vocab_size: int = 2048  # at most this many tokens (word: the most frequent words)


@dataclass
class ModelConfig:
    # gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU (transformers' LlamaConfig).
    family: Literal["gpt2", "llama"] = "gpt2"
    preset: Literal["nano", "tiny", "small", "medium", "large"] = "tiny"
    # Each of these, when set, overrides the preset.
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    context: int | None = None

    def dims(self) -> dict:
        """The preset with any explicitly set fields laid over it."""
        dims = dict(PRESETS[self.preset])
        for key in dims:
            if getattr(self, key) is not None:
                dims[key] = getattr(self, key)
        if dims["n_embd"] % dims["n_head"]:
            raise TestbedError(f"model.n_embd={dims['n_embd']} must be divisible by model.n_head={dims['n_head']}")
        if self.family == "llama" and (dims["n_embd"] // dims["n_head"]) % 2:
            raise TestbedError(f"model.family=llama: model.n_embd / model.n_head = {dims['n_embd'] // dims['n_head']} "
                               "must be even (RoPE rotates pairs of dimensions); change model.n_embd or model.n_head")
        return dims


# Here, beside the keys they fill, so that a config is checked against its model's shape when it is built (a sweep's
# every grid point before the first run). Parameter counts are for GPT-2 with vocab 2048 (tied embeddings).
PRESETS = {
    "nano": dict(n_layer=2, n_embd=96, n_head=2, context=128),  # ~0.4M
    "tiny": dict(n_layer=4, n_embd=128, n_head=4, context=128),  # ~1.1M
    "small": dict(n_layer=6, n_embd=256, n_head=8, context=256),  # ~5.3M
    "medium": dict(n_layer=8, n_embd=384, n_head=8, context=512),  # ~15M
    "large": dict(n_layer=8, n_embd=576, n_head=12, context=512),  # ~33M
}


@dataclass
class TrainConfig:
    # tokens: every generation trains on `tokens` tokens, whatever its pool holds (fixed
    # compute: a small pool is repeated, a large one only partly seen). epochs: every
    # generation makes `epochs` passes over its training set (compute grows with the data).
    compute: Literal["tokens", "epochs"] = "tokens"
    tokens: int = 500_000  # with compute=tokens
    epochs: float = 1.0  # with compute=epochs
    batch_size: int = 16  # blocks per optimiser step, before accumulation
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: float = 0.05  # share of steps spent warming up
    weight_decay: float = 0.1
    # auto: training in bf16 where the GPU, or the CPU (AVX512-BF16, AMX), multiplies it natively, else fp32; on a
    # CPU, sampling and scoring stay fp32. ("fp32", not accelerate's "no": YAML reads an unquoted no as false.)
    mixed_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # How generation g >= 1 starts: fresh weights, generation g-1's, or generation 0's.
    init: Literal["scratch", "previous", "first"] = "scratch"
    # foreach: the same numbers as torch's per-tensor AdamW, faster; fused: faster again, last bits differ.
    adamw: Literal["foreach", "fused"] = "foreach"
    # torch.compile the training step, as CUDA graphs on a GPU (compiled once per run, numbers differ slightly)
    compile: bool = False


@dataclass
class WatermarkConfig:
    # The green-list watermark transformers implements (Kirchenbauer et al.):
    # before each draw, `delta` is added to the logits of a share `gamma` of the
    # vocabulary chosen by hashing the previous token with `key`.
    enabled: bool = False
    gamma: float = 0.25
    delta: float = 2.0
    key: int = 15485863


@dataclass
class SampleConfig:
    size: int = 3600  # synthetic corpus size, in `unit`s
    # verified: documents curate.verifier accepts; the model writes until that many pass (or max_docs are written),
    # so that the next generation can train on as many verified documents as an unverified arm has (mix.after_curation).
    unit: Literal["docs", "tokens", "verified"] = "docs"
    max_docs: int | None = None  # unit=verified: stop after this many documents however few passed; default 20 x size
    # Pure ancestral sampling is temperature 1, top_k 0 (off), top_p 1 (off).
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # default: fill the model context
    batch_size: int = 128
    # Where each synthetic document starts: the end-of-document token alone, or
    # the first `prompt_tokens` tokens of a random human training document.
    prompt: Literal["eos", "human"] = "eos"
    prompt_tokens: int = 8
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)
    # Decode with a fixed-size KV cache, every row kept to the end, and (on CUDA) the step compiled
    # into a CUDA graph: fixed shapes win on a GPU, dropping ended rows wins on a CPU. auto: on CUDA only.
    static_cache: Literal["auto", True, False] = "auto"


@dataclass
class MixConfig:
    # replace: only the newest synthetic corpus; accumulate: human + every
    # synthetic corpus so far; anchor: the newest synthetic corpus with a share
    # `anchor_fraction` of human documents.
    regime: Literal["replace", "accumulate", "anchor"] = "replace"
    anchor_fraction: float = 0.1
    # fixed: the same curated human documents (from the training split) anchor every
    # generation; fresh: new human documents each generation, never seen by any stage
    # (storyworld writes them; other corpora take them from data.fresh_docs).
    anchor_set: Literal["fixed", "fresh"] = "fixed"
    # grow: the training set is the whole pool; fixed: a seeded subsample of
    # `docs` documents from the pool each generation.
    size: Literal["grow", "fixed"] = "grow"
    docs: int | None = None  # with size=fixed; default: the human training split's size
    # With size=fixed: count `docs` after curation, not before. The whole newest corpus is curated and what is kept
    # is cut to the budget, so every arm trains on as many documents whatever its curation removes.
    after_curation: bool = False
    # Synthetic documents cut off at the length cap: left out of every pool (they would be
    # trained as if the model had ended them there), or kept.
    keep_unfinished: bool = False


@dataclass
class EvalConfig:
    # Size-sensitive metrics (distinct-n, rare-token recall) are computed on a
    # seeded sample of exactly this many words, every generation.
    sample_words: int = 20_000
    # A word type (id, bigram) is rare if its count in the human training split is at most
    # floor(rare_max_freq * the split's total count): storyworld's true-rare relative frequency
    # (DEFAULT_RARE_MAX_PROB), the same on every corpus, so figures under one rule compare across
    # corpora. A split too small for any count to qualify has an empty rare band.
    rare_max_freq: float = 5e-5
    heldout_docs: int | None = None  # cap on held-out documents scored for perplexity
    truth_docs: int = 300  # storyworld: fresh true stories scored for the excess cross-entropy
    batch_size: int = 32
    rare_quantile: float | None = None  # when set, rare = the least frequent types up to this quantile (replaces rare_max_freq)
    common_mass: float = 0.5  # common band: the most frequent types covering this share of occurrences
    sample_tokens: int | None = None  # fixed size of the token-id sample; default: sample_words
    self_bleu_pairs: int = 500
    kl_alpha: float = 1.0  # add-alpha smoothing of both distributions in unigram_kl
    confidence_docs: int = 200  # documents scored for self_ppl and gen0_ppl
    embedding_model: str | None = None  # local sentence-embedding model path: turns on semantic_diversity
    embedding_docs: int = 256


@dataclass
class Config:
    run_dir: str = "runs/quickstart"
    seed: int = 0
    generations: int = 3  # generations after generation 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    curate: CurateConfig = field(default_factory=lambda: curate_config()())  # one section per curation step
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Experiment trackers fed through accelerate, writing under <run_dir>/tracking/: training
    # curves per generation and each generation's metrics. Not part of the run's identity.
    track: list[Literal["tensorboard", "wandb"]] = field(default_factory=list)

    def validate(self) -> None:
        """Range checks that a type alone cannot express."""
        if not self.run_dir.strip():  # an unset shell variable ($OUT): the run, or a sweep's runs, would fill this folder
            raise TestbedError("run_dir is empty: give the run a folder of its own, such as run_dir=runs/mine")
        minimum = {
            "generations": 0, "data.docs": 1, "data.heldout_docs": 1, "data.fresh_docs": 0,
            "tokenizer.vocab_size": 257,  # the 256 byte symbols plus one merge at least
            "train.tokens": 1, "train.batch_size": 1, "train.grad_accum": 1,
            "sample.size": 1, "sample.batch_size": 1, "sample.prompt_tokens": 1,
            "eval.sample_words": 1, "eval.self_bleu_pairs": 1, "eval.confidence_docs": 1, "eval.embedding_docs": 2, "eval.truth_docs": 1, "eval.batch_size": 1,
        }
        for key, value in _leaves(self):
            if isinstance(value, float) and not math.isfinite(value):
                raise TestbedError(f"{key}={value} must be a finite number")
        for key, low in minimum.items():
            if _get(self, key) < low:
                raise TestbedError(f"{key}={_get(self, key)} must be >= {low}")
        # Far above any run one machine can hold: a typo such as a billion generations stops here, with
        # its key, instead of minutes later as an out-of-memory crash. generations: gen_NNN has three digits.
        maximum = {
            "generations": 999, "data.docs": 1_000_000, "tokenizer.vocab_size": 1_000_000,
            "model.n_layer": 1_000, "model.n_embd": 65_536, "model.n_head": 1_024, "model.context": 131_072,
            "train.tokens": 10**12, "train.epochs": 10_000, "train.batch_size": 65_536, "train.grad_accum": 65_536,
            "sample.size": 10**9 if self.sample.unit == "tokens" else 10_000_000, "sample.batch_size": 65_536,
            "sample.prompt_tokens": 131_072, "sample.max_new_tokens": 131_072, "mix.docs": 100_000_000,
            "curate.dedup.num_perm": 8_192, "curate.dedup.shingle": 1_000, "curate.detector.train_docs": 10_000_000,
            "eval.sample_words": 10**9, "eval.sample_tokens": 10**9, "eval.truth_docs": 1_000_000,
            "eval.batch_size": 65_536, "eval.self_bleu_pairs": 10_000_000, "eval.confidence_docs": 10_000_000,
            "eval.embedding_docs": 10_000_000,
        }
        for key, high in maximum.items():
            value = _get(self, key)
            if value is not None and value > high:
                raise TestbedError(f"{key}={value} is too large: at most {high:,}; lower it")
        if not self.train.epochs > 0:
            raise TestbedError(f"train.epochs={self.train.epochs} must be > 0")
        if not self.train.lr > 0:  # written so that NaN fails too
            raise TestbedError(f"train.lr={self.train.lr} must be > 0")
        for key in ("data.max_docs", "model.n_layer", "model.n_embd", "model.n_head", "model.context",
                    "mix.docs", "eval.heldout_docs", "sample.max_new_tokens", "eval.sample_tokens"):
            value = _get(self, key)
            if value is not None and value <= 0:
                raise TestbedError(f"{key}={value} must be > 0 (or null for the default)")
        from testbed.sample import max_new_tokens  # here: it imports this module

        max_new_tokens(self.sample, self.model.dims()["context"])  # the shape, and room to write after the prompt
        if not self.sample.temperature > 0:
            raise TestbedError(f"sample.temperature={self.sample.temperature} must be > 0")
        if self.sample.top_k < 0:
            raise TestbedError(f"sample.top_k={self.sample.top_k} must be >= 0 (0 turns it off)")
        if not 0 < self.sample.top_p <= 1:
            raise TestbedError(f"sample.top_p={self.sample.top_p} must be in (0, 1] (1 turns it off)")
        if self.sample.max_docs is not None and self.sample.max_docs < self.sample.size:
            raise TestbedError(f"sample.max_docs={self.sample.max_docs} is below sample.size={self.sample.size}: "
                               "raise it, or null for 20 x sample.size")
        if self.sample.unit == "verified" and not self.curate.verifier.enabled:
            raise TestbedError("sample.unit=verified counts the documents curate.verifier accepts: "
                               "set curate.verifier.enabled=true (and curate.verifier.name)")
        if self.sample.unit == "verified" and not self.mix.after_curation:
            raise TestbedError("sample.unit=verified writes extra documents for the verifier to reject; without "
                               "mix.after_curation=true the mix would draw its budget before verifying: set it")
        if self.mix.docs is not None and self.mix.size != "fixed":
            raise TestbedError(f"mix.docs={self.mix.docs} is the budget of mix.size=fixed, and mix.size={self.mix.size} "
                               "trains on the whole pool: set mix.size=fixed, or remove mix.docs")
        if self.mix.after_curation and self.mix.size != "fixed":
            raise TestbedError("mix.after_curation=true cuts the curated pool to mix.docs: it needs mix.size=fixed")
        if self.mix.after_curation and self.curate.detector.enabled and self.curate.detector.kind == "classifier":
            raise TestbedError("curate.detector.kind=classifier learns from model text outside the pool, and "
                               "mix.after_curation=true puts all of generation 0's in the pool of generation 1: "
                               "set mix.after_curation=false, or curate.detector.kind=likelihood")
        if not 0 <= self.mix.anchor_fraction <= 1:
            raise TestbedError(f"mix.anchor_fraction={self.mix.anchor_fraction} must be in [0, 1]")
        for section in dataclasses.fields(self.curate):  # each curation step checks its own keys (their caps: above)
            getattr(self.curate, section.name).validate(self)
        if not 0 < self.eval.rare_max_freq < 1:
            raise TestbedError(f"eval.rare_max_freq={self.eval.rare_max_freq} must be in (0, 1)")
        if self.eval.rare_quantile is not None and not 0 < self.eval.rare_quantile < 1:
            raise TestbedError(f"eval.rare_quantile={self.eval.rare_quantile} must be in (0, 1) (or null: use eval.rare_max_freq)")
        if not 0 < self.eval.common_mass <= 1:
            raise TestbedError(f"eval.common_mass={self.eval.common_mass} must be in (0, 1]")
        if not self.eval.kl_alpha > 0:
            raise TestbedError(f"eval.kl_alpha={self.eval.kl_alpha} must be > 0")
        if self.eval.embedding_model is not None and not Path(self.eval.embedding_model).is_dir():
            raise TestbedError(f"eval.embedding_model={self.eval.embedding_model}: no such folder; give the path of a "
                               "local sentence-embedding model saved with save_pretrained, or null to turn it off")
        if not 0 < self.sample.watermark.gamma < 1:
            raise TestbedError(f"sample.watermark.gamma={self.sample.watermark.gamma} must be in (0, 1)")
        if not 0 < self.sample.watermark.delta <= 50:  # e^50: past it only green tokens are drawn, and fp32 logits overflow
            raise TestbedError(f"sample.watermark.delta={self.sample.watermark.delta} must be in (0, 50] (2.0 by default)")
        if not 0 <= self.sample.watermark.key < 2 ** 63:  # torch seeds its generator with it
            raise TestbedError(f"sample.watermark.key={self.sample.watermark.key} must be in [0, 2^63)")
        if not 0 <= self.train.warmup < 1:
            raise TestbedError(f"train.warmup={self.train.warmup} must be in [0, 1)")
        if not self.train.weight_decay >= 0:
            raise TestbedError(f"train.weight_decay={self.train.weight_decay} must be >= 0")
        if not 0 <= self.train.min_lr_ratio <= 1:
            raise TestbedError(f"train.min_lr_ratio={self.train.min_lr_ratio} must be in [0, 1]")
        from testbed.corpus.sources import SOURCES  # here: it imports this module

        if SOURCES[self.data.source].truth and self.data.fresh_docs:  # any source with a known generator, not by name
            raise TestbedError(f"data.fresh_docs is for corpora without a generator: {self.data.source} writes new "
                               "stories for mix.anchor_set=fresh itself; remove data.fresh_docs")
        if self.data.path and self.data.source != "local":
            raise TestbedError(f"data.path={self.data.path} is read by data.source=local only, and data.source="
                               f"{self.data.source} would train on {'its own stories' if self.data.source == 'storyworld' else 'data.name'}: "
                               "set data.source=local, or remove data.path")
        if self.data.source == "local" and not self.data.path:
            raise TestbedError("data.path is not set: data.source=local needs data.path=FILE (.txt, .jsonl, .json or .parquet)")
        if not self.data.separator:
            raise TestbedError('data.separator is empty: use "line", "paragraph" or a literal string such as <|endoftext|>')


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML file (or the defaults when path is None), apply key=value overrides, validate.

    A file may start from another with `base: other.yaml` and set only the keys
    it changes: the strategy configs are the quickstart plus their curation.
    """
    cfg = _read_config(path, overrides)
    cfg.validate()
    return cfg


def load_saved(path: str | Path) -> Config:
    """A run's saved config.yaml: its keys and types are checked, not the value checks (validate), which it passed
    when the run started: a check added since must not lock a user out of their finished runs."""
    try:
        return _read_config(path)
    except TestbedError as e:  # else "unknown config key foo" reads as the user's own config being wrong
        if str(path) in str(e):
            raise
        raise TestbedError(f"{path} (a run's saved config): {e}") from None


def _read_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """A config from its file and overrides, without the value checks (validate)."""
    raw = _read(Path(path), ()) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TestbedError(f"override {item!r} is not key=value (for example generations=5 or model.n_layer=2)")
        if section := _section(key):
            # Its keys in the file would be dropped for the few given here (train={tokens: 5} loses train.lr).
            names = {f.name for f in dataclasses.fields(section)}
            try:
                given = yaml.safe_load(value)
            except yaml.YAMLError:
                given = None
            first = key
            while section := _section(first):  # down to the first key that holds a value
                first += "." + dataclasses.fields(section)[0].name
            example = (" ".join(f"{key}.{k}={yaml_value(v)}" for k, v in given.items())
                       if isinstance(given, dict) and given and given.keys() <= names  # not {tokens:5}'s "tokens:5"
                       and not any(isinstance(v, (dict, type(None))) for v in given.values()) else f"{first}=...")
            raise TestbedError(f"override {item!r}: {key} is a section; set its keys one at a time, such as {example}")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if node.get(part) is None:  # absent, or a section left empty in the file
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise TestbedError(f"override {item!r}: {part} is not a section")
        node[leaf] = _Raw(value)
    return _build(Config, raw, "")


def _read(path: Path, seen: tuple) -> dict:
    """A YAML file's keys, over those of the file its `base:` names (a path relative to it)."""
    if not path.is_file():
        raise TestbedError(f"config file {'is a folder' if path.is_dir() else 'not found'}: {path}; give a YAML file "
                           "such as configs/quickstart.yaml")
    if path.resolve() in seen:
        raise TestbedError(f"{path}: base: files include each other in a cycle")
    raw = read_mapping(path)
    if "arms" in raw and "checks" in raw:
        raise TestbedError(f"{path} is a lab, not a run's config: run it with `testbed lab run {path}`")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise TestbedError(f"{path}: base={base!r} must be the path of another config file")
    if not (path.parent / base).is_file():
        raise TestbedError(f"{path}: base={base}: {'a folder' if (path.parent / base).is_dir() else 'no such file'} "
                           f"({path.parent / base}; the path is relative to this file)")
    return _merge(_read(path.parent / base, seen + (path.resolve(),)), raw)


class _UniqueKeys(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error: YAML keeps the last silently, and a config
    with `generations: 1` and, further down, `generations: 5` would run whichever came last."""

    def construct_mapping(self, node, deep=False):
        # `<<: *defaults` merges first, as safe_load does; a key given beside the merge overrides the merged one.
        explicit = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value[len(node.value) - explicit:]:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a name, not a list or a mapping",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping of keys to values (a config, a lab)."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys) or {}
    except UnicodeDecodeError as e:
        raise TestbedError(f"{path}: not UTF-8 (invalid byte at offset {e.start}); re-encode the file as UTF-8") from None
    except yaml.YAMLError as e:
        raise TestbedError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    if not isinstance(raw, dict):
        raise TestbedError(f"{path}: the top level must be a mapping of keys to values")
    return raw


def _yaml_problem(e: yaml.YAMLError) -> str:
    """What the parser found, and where: "mapping values are not allowed here at line 4, column 11"."""
    problem = getattr(e, "problem", None) or first_line(e)
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _Raw(str):
    """A command-line value, read by the type of its key: `separator=---` stays a
    string, `generations=5` becomes an int, where plain YAML would turn the first into null."""


def check_registry(names, section: type, key: str) -> None:
    """A registry (SOURCES, FAMILIES) against the Literal of its config key, which validation and the docs read:
    a name added to one only would pass validation and fail in the run, or be refused as not allowed."""
    field_name = key.rpartition(".")[2]
    choices = set(typing.get_args(typing.get_type_hints(section)[field_name]))
    if set(names) != choices:
        raise TypeError(f"{key}: the registry has {', '.join(sorted(names))} and the config's Literal "
                        f"{', '.join(sorted(choices))}; add the name to both (docs/extending.md)")


check_registry(PRESETS, ModelConfig, "model.preset")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def yaml_value(v) -> str:
    """One value as a config file or a key=value override spells it: null, false, [human, synthetic]."""
    return yaml.safe_dump(v, default_flow_style=True, width=1 << 16).removesuffix("...\n").strip()


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _section(key: str):
    """The config class of the section a dotted key names, or None where it names a value or nothing."""
    tp = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if tp is Config:
            hints["curate"] = curate_config()
        if part not in hints:
            return None
        tp = hints[part]
    return tp if dataclasses.is_dataclass(tp) else None


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise TestbedError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    if cls is Config:
        hints["curate"] = curate_config()  # the steps as registered now, so a step added at run time has its keys
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise TestbedError(f"unknown config key {prefix}{key}{hint}; allowed keys: {', '.join(prefix + n for n in names)}")
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    return cls(**kwargs)


def _coerce(tp, value, key: str):
    if isinstance(value, _Raw):
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        text = _is_text(tp) and not quoted and value.lower() not in ("null", "~", "")
        try:
            value = str(value) if text else yaml.safe_load(value or "null")
        except yaml.YAMLError as e:
            raise TestbedError(f"{key}={value}: not a valid value ({_yaml_problem(e)}); quote it, or write a number, "
                               "true/false, null or a list such as [a, b]") from None
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        # By type too: 1 == True in Python, but sample.static_cache=1 is not true, and would be ignored as it.
        if not any(type(value) is type(a) and value == a for a in allowed):
            spelled = [str(a).lower() if isinstance(a, bool) else str(a) for a in allowed]  # as YAML writes them
            raise TestbedError(f"{key}={value!r} is not allowed; choose one of: {', '.join(spelled)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            example = typing.get_args(item)[0] if typing.get_origin(item) is Literal else "human"
            raise TestbedError(f"{key}={value!r} has the wrong type: expected a list such as [{example}]")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 1e308:  # float() would raise OverflowError
            raise TestbedError(f"{key}={value} is too large for a number")
        return float(value)
    if tp is int and isinstance(value, (float, str)):
        # train.tokens=1e6: YAML 1.1 reads it as a string (1.0e+6 as a float); a whole number is what the user meant.
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            return int(number)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads 5e-5 (no dot) as a string; a number is what the user meant. inf, nan and 1e400 too: the
        # value checks then say "must be a finite number", not "wrong type".
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:  # an empty `key=` or a null in the file: the key has no default to fall back on here
        raise TestbedError(f"{key} is empty: give it a value ({tp.__name__}), or leave it out for its default")
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise TestbedError(f"{key}={value!r} has the wrong type: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _is_text(tp) -> bool:
    if typing.get_origin(tp) is list:
        return False
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if typing.get_origin(tp) is Literal:
        return all(isinstance(a, str) for a in args)
    return all(a is str for a in args)


def _leaves(cfg, prefix: str = ""):
    """(dotted key, value) of every setting."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# Where a run's folder is, how far it goes and what tracks it: a run resumed, extended or moved is the same experiment.
NOT_THE_EXPERIMENT = ("run_dir", "generations", "track")


def diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys
