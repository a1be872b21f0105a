"""Every key of a metrics row, once: its family, which way collapse moves it, whether it is a headline
figure, and what it means.

Everything that shows a metric reads this table: the evaluator's log line and the run's closing
summary (`headline`, `summary_keys`), `testbed compare`'s default columns and arrows, the report's
plots, the collapse test (`signal`) and the key table of docs/metrics.md, which
scripts/metrics_doc.py writes from `markdown()`. Adding a metric is its function, its value in the
row (docs/extending.md), one row here, and running the script.
"""
from dataclasses import dataclass

from testbed.metrics.tail import BANDS

# The docs' table is cut into these sections, in this order.
FAMILIES = {
    "run": "**the generation and what it trained on**",
    "fit": "**fit and confidence** (model g)",
    "diversity": "**n-gram diversity** (word sample)",
    "shape": "**distribution shape** (word sample against the human training split)",
    "tail": "**tail recall** (fixed-size samples)",
    "length": "**length and degeneration**",
    "truth": "**storyworld only**",
    "curation": "**curation** (generations whose config turns a [curation](curation.md) step on)",
}


@dataclass(frozen=True)
class Metric:
    key: str
    family: str
    collapse: str  # "up", "down" or "": which way collapse moves it, for the arrows and the red cells
    meaning: str
    formula: str = ""
    moves: str = ""  # the docs' "collapse moves it" cell, where it says more than `collapse`
    headline: bool = False  # a column of `testbed compare` and the run's summary, a panel of the report's overview
    plot: bool = False  # drawn in the report besides the headline metrics
    signal: bool = False  # moves the collapse way in the quickstart's 3 generations: test_metrics_collapse holds it to that
    parts: tuple[str, ...] | None = ()  # a table's keys (recall_by_band.rare); None: any (train_mix's labels)
    corpus: bool = False  # read from a text alone (Evaluator.corpus_metrics): testbed eval and the evaluate module write it

    def __post_init__(self):
        # A row added with a misspelt section or direction would otherwise fail in the docs script, or lose its arrow.
        if self.family not in FAMILIES:
            raise ValueError(f"Metric {self.key!r}: family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.collapse not in ("up", "down", ""):
            raise ValueError(f"Metric {self.key!r}: collapse {self.collapse!r} must be 'up', 'down' or ''")


RECALL_REL = ("each recall above over the same recall of human text of the same size (the reference); null where the "
              "human figure is 0, or where the reference's sample is smaller than the generations': the word recalls "
              "when `reference.json` says `comparable: false` (the held-out split has fewer words than "
              "`eval.sample_words`), `rare_id_recall_rel` when it says `comparable_ids: false` (fewer tokens than "
              "`eval.sample_tokens`), or where the generation wrote fewer words (tokens) than that sample size itself")
DETECTION = ("how well the watermark filter told synthetic from human text in the pool: precision and recall of what it "
             "dropped (precision null when it dropped nothing, recall null when the pool held no synthetic text), ROC "
             "AUC of its z-scores, and the number of synthetic documents it kept")

METRICS = [
    Metric("generation", "run", "", "the generation number g: 0 for the model trained on human text"),
    Metric("train_mix", "run", "", "`{label: documents}`: the composition of the set generation g trained on, after "
           "curation; labels `human` and `synthetic:gen_NNN` (the model that wrote them)", parts=None),
    Metric("train_tokens", "run", "", "tokens trained on (steps × batch × context; `train.compute`)",
           "steps × `train.batch_size` × `train.grad_accum` × context × processes"),
    Metric("train_passes", "run", "", "passes over the packed training set: below 1 when a large pool is only partly "
           "seen, above 1 when a small one is repeated", "`train_tokens` / tokens of the packed set"),
    Metric("human_tokens_seen", "run", "", "human tokens trained on (each document with its end token), the expectation "
           "under uniform block sampling: the human share of the training set's tokens, of the tokens trained (never "
           "more than `train_tokens`)", "`train_tokens` × human tokens / all tokens in the training set"),
    Metric("unfinished_docs", "run", "up", "generation g's samples cut off at the length cap without ending; left out "
           "of later pools unless `mix.keep_unfinished`", "#samples not ended", moves="up, as `ended_rate` falls"),

    Metric("heldout_ppl", "fit", "up", "perplexity on held-out human documents, each scored as end token, text, end "
           "token; a document longer than the context is scored by a window sliding with stride context // 2, each "
           "window scoring only the tokens no earlier window scored, with its earlier tokens as context (every token "
           "once, with at least half a context of history)",
           "exp(Σ −ln p / N), N = tokens + one closing end token per document", headline=True, signal=True),
    Metric("heldout_bpb", "fit", "up", "the same in bits per UTF-8 byte, comparable across tokenizers",
           "Σ −ln p / ln 2 / Σ (bytes + 1)", signal=True),
    *[Metric(f"heldout_ppl_{b}", "fit", "up", "`heldout_ppl` over the predicted tokens whose id is in each band",
             "exp(mean −ln p over the band's targets); null for a band with no targets",
             moves="up, the rare band first and most", plot=b in ("rare", "common"), signal=True) for b in BANDS],
    Metric("self_ppl", "fit", "down", "model g's perplexity on `eval.confidence_docs` (200) seeded documents of its "
           "own corpus", "as `heldout_ppl`",
           moves="down as the model grows confident in what it writes (see below)", plot=True),
    Metric("gen0_ppl", "fit", "up", "model g's perplexity on the same seeded documents of generation 0's corpus "
           "(present when the loop passes that corpus)", "as `heldout_ppl`",
           moves="up: later models lose what generation 0 wrote", plot=True, signal=True),

    *[Metric(f"distinct_{n}", "diversity", "down", "unique n-grams / all n-grams; n-grams stay inside documents",
             "|set(n-grams)| / #n-grams", moves="down, eventually (see below)", headline=n == 2, corpus=True) for n in (1, 2, 3, 4)],
    *[Metric(f"entropy_{n}", "diversity", "down", "Shannon entropy of the sample's n-gram frequencies, bits; "
             "`entropy_1` is the unigram entropy", "−Σ p log₂ p, p = count / total (plug-in)", corpus=True) for n in (1, 2, 3)],
    Metric("self_bleu", "diversity", "up", "mean sentence BLEU of `eval.self_bleu_pairs` (500) seeded ordered pairs "
           "(hypothesis, reference) of distinct sample documents, 0..1",
           "sacrebleu's `sentence_bleu` on the words: BLEU-4, exponential smoothing, effective order", corpus=True),
    Metric("compression_ratio", "diversity", "up", "how redundant the sample is",
           "bytes of the sample (words joined by spaces, documents by newlines) / bytes after zlib level 9", corpus=True),
    Metric("semantic_diversity", "diversity", "down", "only with `eval.embedding_model` (a local sentence-embedding "
           "model); otherwise absent and the run says why in one line",
           "1 − mean cosine similarity over all pairs of the mean-pooled embeddings of `eval.embedding_docs` (256) "
           "seeded documents (an empty one, with no tokens to pool, left out)", corpus=True),

    Metric("unigram_kl", "shape", "up", "KL(human ‖ sample) of word frequencies, bits",
           "Σ p̃ log₂(p̃ / q̃), both smoothed add-α over the union V of their types: p̃(w) = (c(w) + α) / (N + α|V|), "
           "α = `eval.kl_alpha` (1)", plot=True, signal=True, corpus=True),
    Metric("unigram_js", "shape", "up", "Jensen-Shannon divergence of the same, bits, in [0, 1]; needs no smoothing",
           "½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2", signal=True, corpus=True),
    Metric("zipf_slope", "shape", "down", "least-squares slope of ln count against ln rank over every word type of "
           "the sample (about −1 for natural text)", "slope of the fit",
           moves="down (steeper) as mass moves to the head", corpus=True),
    Metric("vocab_used", "shape", "down", "word types in the sample", "|types|", corpus=True),
    Metric("tail_mass", "shape", "down", "share of the sample's words whose type is in the human rare band",
           "Σ_{w rare} c(w) / Σ c(w)", plot=True, signal=True, corpus=True),

    Metric("rare_token_recall", "tail", "down", "share of the human rare word types present in the sample",
           "|rare ∩ sample| / |rare|", headline=True, signal=True, corpus=True),
    Metric("rare_mass_recall", "tail", "down", "the same weighted by human frequency",
           "Σ_{rare ∩ sample} c_h(w) / Σ_{rare} c_h(w)", signal=True, corpus=True),
    Metric("recall_by_band", "tail", "down", "`{rare, middle, common}`: share of each band's word types present",
           "as `rare_token_recall`, per band", moves="down, the rare band first", parts=BANDS, corpus=True),
    Metric("rare_bigram_recall", "tail", "down", "share of the human rare word bigrams present (collapse loses rare "
           "combinations before rare words)", "as `rare_token_recall`, over bigrams", plot=True, signal=True, corpus=True),
    Metric("rare_id_recall", "tail", "down", "share of the human rare token ids present in a seeded sample of "
           "`eval.sample_tokens` tokens", "as `rare_token_recall`, over ids", signal=True, corpus=True),
    *[Metric(f"{k}_rel", "tail", "down", RECALL_REL, "recall / human recall",
             moves="down (1: as much of the tail as human text keeps)", signal=k != "recall_by_band",
             parts=BANDS if k == "recall_by_band" else ())
      for k in ("rare_token_recall", "rare_mass_recall", "rare_bigram_recall", "rare_id_recall", "recall_by_band")],
    *[Metric(k, "tail", "", "sizes of the three rare bands", moves="constant in a run")
      for k in ("rare_types", "rare_bigram_types", "rare_id_types")],
    *[Metric(k, "tail", "", "the sample sizes actually used (less only when the corpus is smaller)", moves="constant", corpus=True)
      for k in ("eval_words", "eval_tokens")],

    Metric("ended_rate", "length", "down", "share of samples that ended with the end token (1 − the share ending "
           "without one)"),
    *[Metric(k, "length", "", "tokens per sampled document, end token excluded (a human prompt, `sample.prompt=human`, counted: the reference counts whole human documents); percentiles by linear "
             "interpolation", moves="either way: compare with the reference")
      for k in ("mean_doc_tokens", "doc_tokens_p10", "doc_tokens_p50", "doc_tokens_p90")],
    Metric("loop_rate", "length", "up", "share of the sample's documents with a repetition loop: some phrase of 1 to "
           "10 words three or more times back to back, spanning at least 6 words", corpus=True),

    Metric("true_excess_ce", "truth", "up", "model g's cross-entropy on fresh true stories minus their true log-loss, "
           "nats per token: a Monte Carlo estimate of KL(truth ‖ model) per token over `eval.truth_docs` (300) stories "
           "drawn once per run. The model scores only each story's standard tokenization, not every tokenization that "
           "spells it, so in expectation it is an upper bound on the per-token KL where the tokenizer knows every word of "
           "the stories (else see `true_excess_ce_known`)",
           "(Σ −ln q − Σ −ln p) / tokens, tokens counting each story's closing end token", headline=True, signal=True),
    Metric("true_excess_ce_se", "truth", "", "standard error of `true_excess_ce`, with stories, not tokens, as the "
           "independent draws; null below two stories",
           "delta method for a ratio: d_i = −ln q_i + ln p_i and n_i tokens of story i, R = Σ d / Σ n, "
           "√(Σ (d_i − R n_i)² / (N (N − 1))) / (Σ n / N)", moves="neither: shrinks as `eval.truth_docs` grows"),
    Metric("true_excess_nats_per_story", "truth", "up", "the same excess per story instead of per token", "Σ d_i / N",
           signal=True),
    Metric("true_excess_ce_known", "truth", "up", "`true_excess_ce` over the true stories whose every word the run's "
           "tokenizer knows (all of them with `bpe`, and with `word` when the training split is large: the "
           "quickstart's leaves out 3 of its 300). A story with a word the split never held reads `<|unk|>` there "
           "and costs each model what it guesses for `<|unk|>`: next to nothing for a model that trained on such "
           "words (fresh human text), ten nats or more for one that never met one. Compare arms that differ in that "
           "on this figure; null when every story holds an unknown",
           "(Σ −ln q − Σ −ln p) / tokens over the stories without `<|unk|>`", signal=True),
    Metric("validity_rate", "truth", "down", "share of model g's samples the grammar can produce, exactly as written "
           "(names repeated, capitals and spacing right). The quickstart's generation 0 writes 1-21% such stories, "
           "by seed and precision (19% in the README's run); a name repeated ten sentences later is what small "
           "models miss (see `grammar_rate`)",
           headline=True, signal=True, corpus=True),
    Metric("grammar_rate", "truth", "down", "share of samples that are whole grammatical stories when names need not "
           "repeat: where a story names its hero or friend again, any name of the same class is accepted. Pronoun "
           "agreement (structural in the grammar), every other slot and the exact surface form still count",
           headline=True, signal=True, corpus=True),
    Metric("valid_prefix", "truth", "down", "mean share of a sample's tokens (storyworld tokens: words and punctuation; any other character, a digit "
           "or a semicolon, is a token of its own the grammar rejects) "
           "that form the longest prefix the grammar can continue, i.e. everything before the first token it cannot "
           "accept. Tokens only: capitals and spacing are not checked. No tokens scores 0; a text right so far that "
           "stops early scores 1 (`ended_rate` and the two rates above catch that)",
           "mean over samples of k / n, k = the position of the first token the grammar cannot accept (n if none), "
           "n = tokens", headline=True, signal=True, corpus=True),
    *[Metric(k, "truth", "down", "share of the grammar's true rare words (and of their probability mass) present in "
             "the word sample", headline=k == "true_tail_recall", signal=True, corpus=True)
      for k in ("true_tail_recall", "true_tail_mass_recall")],

    Metric("curated_kept", "curation", "", "share of the pool kept by all the steps together", "kept / pool documents",
           headline=True),
    Metric("train_synthetic_share", "curation", "", "synthetic share of what was trained on", "synthetic kept / kept",
           headline=True),
    Metric("curation", "curation", "", "the steps' reports, as in `curation.json`: per step its name, `docs_in`, "
           "`docs_out`, `removed_human`, `removed_synthetic`, `seconds`, and for the watermark and detector the "
           "figures below (not flattened into trackers or `metrics.csv`)"),
    *[Metric(f"watermark_{k}", "curation", "", DETECTION,
             "precision = synthetic dropped / dropped; recall = synthetic dropped / synthetic")
      for k in ("precision", "recall", "roc_auc", "synthetic_slipped")],
    *[Metric(f"detector_{k}", "curation", "", "the same for the detector", "as the watermark's")
      for k in ("precision", "recall", "roc_auc", "synthetic_slipped")],
    Metric("detector_in_distribution", "curation", "", "whether the detector was built on the pool's writer "
           "(`train_on=writer`, or generation 1 under `earlier`): its figures are then an upper bound (see [which "
           "detector figure is which](curation.md#which-detector-figure-is-which))"),
]


def find(key: str) -> Metric | None:
    return next((m for m in METRICS if m.key == key), None)


def numbers(row: dict, sep: str = "/", prefix: str = "") -> dict:
    """A metrics row's numbers, nested ones flattened (recall_by_band/rare, or with sep="." recall_by_band.rare as
    metrics.csv and --metrics name them); nulls, flags and lists left out."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(numbers(v, sep, f"{prefix}{k}{sep}"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def direction(key: str) -> int:
    """+1 where collapse moves the metric up, -1 where down, 0 where neither or the key is not in the table; a part
    of a table (recall_by_band.rare) moves as its table does."""
    m = find(key) or find(key.partition(".")[0])
    return {"up": 1, "down": -1}.get(m.collapse, 0) if m else 0


def headline() -> list[str]:
    return [m.key for m in METRICS if m.headline]


def plotted() -> list[str]:
    """What the report draws, in table order: the headline metrics and the others marked for a plot."""
    return [m.key for m in METRICS if m.headline or m.plot]


def summary_keys(rows: list[dict]) -> list[str]:
    """The run's closing table: the generation and the headline metrics every row has (curation's, absent from
    generation 0, and storyworld's on other corpora are left out)."""
    return [k for k in ("generation", *headline()) if rows and all(k in r for r in rows)]


# docs/metrics.md's table lies between these lines; scripts/metrics_doc.py rewrites it from markdown().
DOCS_START = "<!-- generated from testbed/metrics/spec.py by scripts/metrics_doc.py: edit the table there and run the script -->"
DOCS_END = "<!-- end of the table generated from testbed/metrics/spec.py -->"


def markdown() -> str:
    """The docs' key table, one row per run of metrics that read alike (distinct_1..4 share one), after a line
    naming the headline metrics."""
    def line(*cells):
        cells = [c.replace("|", r"\|") for c in cells]  # a formula's |set| must not end its cell
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    def reads(m):
        return m.family, m.meaning, m.formula, m.moves or m.collapse

    lines = ["The headline metrics: " + ", ".join(f"`{k}`" for k in headline()) + ".", "",
             "| key | what | formula | collapse moves it |", "|---|---|---|---|"]
    groups = []
    for m in METRICS:
        if groups and reads(groups[-1][0]) == reads(m):
            groups[-1].append(m)
        else:
            groups.append([m])
    for i, group in enumerate(groups):
        family, meaning, formula, moves = reads(group[0])
        if i == 0 or family != groups[i - 1][0].family:
            lines.append(f"| {FAMILIES[family]} | | | |")
        lines.append(line(", ".join(f"`{m.key}`" for m in group), meaning, formula, moves))
    return "\n".join(lines)
