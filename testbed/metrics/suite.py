"""One generation's metrics row: what metrics.jsonl holds.

Model metrics score model g on held-out human text and on samples; corpus
metrics score what model g wrote, cut to eval.sample_words words (and
eval.sample_tokens tokens for the figures over tokenizer ids) so every
generation and every run is measured at the same size. testbed.metrics.spec
holds every key: what it measures, its formula, and which way collapse
moves it (docs/metrics.md is written from it).
"""
import math
import random
from collections import Counter

import numpy as np

from testbed.corpus.sources import truth
from testbed.metrics import degeneration, diversity, perplexity, semantic, shape, spec, tail
from testbed.text import words
from testbed.sample import written_texts
from testbed.tokenizer import encode

RECALLS = ["rare_token_recall", "rare_mass_recall", "rare_bigram_recall", "rare_id_recall"]


class Evaluator:
    @property
    def headline(self) -> list[str]:
        """The keys the loop logs after each generation (read from the table at call time, so a row added later counts)."""
        return spec.headline()

    def __init__(self, cfg, tokenizer, train_texts: list[str], heldout_texts: list[str], autocast=None,
                 truth_seed: int = 0, reference_seed: int | None = None, train_ids=None, device=None):
        """train_ids: the token ids of train_texts, where the caller has them (the loop's human documents),
        so that a corpus of millions is not encoded a second time. device: where the embedding model runs (the
        run's device; None: a GPU if there is one), so a run kept on the CPU keeps it there too."""
        self.cfg = cfg.eval
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.autocast = autocast
        self.reference_seed = reference_seed
        self.heldout_texts = heldout_texts[: cfg.eval.heldout_docs]
        self.heldout = encode(tokenizer, self.heldout_texts)
        self._human(train_texts, train_ids)
        self._references = {}
        self.embedder = None
        self.device = device
        self.notes = [] if self.cfg.embedding_model else [
            "semantic_diversity off: eval.embedding_model (a local sentence-embedding model path) is not set"]
        if not self.rare and self.human.counts:  # no human text (testbed eval without --human): no tail figures
            # The recalls are then undefined (null) whatever the models write: said here, before anything is measured.
            total = sum(self.human.counts.values())
            self.notes.append(f"note: no word of the human training split is rare ({total:,} words, too few for "
                              f"eval.rare_max_freq={self.cfg.rare_max_freq:g} to reach a count of 1), so the rare "
                              f"recalls and tail_mass read null; use a split of at least {math.ceil(1 / self.cfg.rare_max_freq):,} "
                              "words, or set eval.rare_quantile" if self.cfg.rare_quantile is None else
                              f"note: no word of the human training split is rare ({total:,} words), so the rare "
                              "recalls and tail_mass read null")
        unk = tokenizer.unk_token_id
        if unk is not None and len(self.heldout.flat) and (share := float((self.heldout.flat == unk).mean())) > 0.1:
            # The training split's own share is noted where the tokenizer is made; held-out text can lack far more
            # (text without spaces is one "word" a document, each unseen), and heldout_ppl then prices <|unk|>.
            # Past 10%: a small storyworld split leaves 2-6% of held-out words unseen (the labs' reduced size), a
            # pathology is most of them.
            self.notes.append(f"note: {share:.1%} of the held-out split's tokens are <|unk|> (words the training "
                              "split lacks or the vocabulary left out): heldout_ppl prices them by each model's guess "
                              "at <|unk|>, not by the words; use tokenizer.kind=bpe for open text")
        self.source = cfg.data.source
        self.world = truth(cfg.data)  # the corpus's generator, when known: storyworld's grammar
        if self.world is not None:
            # Fresh stories, the same ones every generation, drawn apart from the training corpus.
            scored = self.world.sample_with_logprob(cfg.eval.truth_docs, truth_seed)
            self.truth_ids = encode(tokenizer, [t for t, _ in scored])
            self.truth_nll = [-lp for _, lp in scored]
            self.true_rare = self.world.rare_words()
            # A true story with a word the tokenizer never saw reads <|unk|> there, and its excess is then the price
            # a model puts on <|unk|>: next to nothing for one that trained on such words (fresh human text), ten
            # nats and more for one that never met one (its own split, repeated). true_excess_ce_known leaves them out.
            unk = tokenizer.unk_token_id
            self.truth_known = [i for i, d in enumerate(self.truth_ids) if unk is None or unk not in d]
            if len(self.truth_known) < 0.99 * len(self.truth_ids):
                self.notes.append(
                    f"note: {len(self.truth_ids) - len(self.truth_known)} of {len(self.truth_ids)} true stories hold a "
                    f"word the tokenizer did not see in the training split (<|unk|>): true_excess_ce prices them by "
                    f"each model's guess at <|unk|>, which models trained on other text than this split (fresh human "
                    f"stories) learn and others do not; compare such arms on true_excess_ce_known")

    def _human(self, train_texts: list[str], train_ids) -> None:
        """Frequency bands of the human training split: over words and word bigrams, and over token ids."""
        quantile, mass = self.cfg.rare_quantile, self.cfg.common_mass
        self.human = tail.Human((words(t) for t in train_texts), self.cfg.rare_max_freq, quantile, mass)
        self.rare = self.human.rare
        ids = encode(self.tokenizer, train_texts) if train_ids is None else train_ids
        id_counts = Counter({i: c for i, c in enumerate(tail.count_ids(ids, len(self.tokenizer)).tolist()) if c})
        self.rare_ids = tail.rare_types(id_counts, tail.rare_threshold(id_counts, self.cfg.rare_max_freq, quantile))
        id_counts[self.eos] += len(ids)  # every training document ends with one
        id_max = tail.rare_threshold(id_counts, self.cfg.rare_max_freq, quantile)
        id_min = tail.head_min_count(id_counts, mass)
        # An id the human split never uses is rarer than rare.
        self.id_band = np.array([tail.BANDS.index(tail.band(id_counts.get(i, 0), id_max, id_min))
                                 for i in range(len(self.tokenizer))])

    def model_metrics(self, model) -> dict:
        """Model g on held-out human text (overall and per token-frequency band) and, on storyworld, on the truth."""
        nll = perplexity.token_nll(model, self.heldout, self.eos, self.cfg.batch_size, self.autocast)
        sums = [float(t.sum()) for t in nll]
        row = {"heldout_ppl": perplexity.perplexity(sums, self.heldout),
               "heldout_bpb": perplexity.bits_per_byte(sums, self.heldout_texts)}
        if self.human.counts:
            bands = perplexity.band_perplexity(nll, self.heldout, self.eos, self.id_band, tail.BANDS)
            row.update({f"heldout_ppl_{b}": v for b, v in bands.items()})
        if self.world is not None:
            excess = [q - p for q, p in zip(self._nll(model, self.truth_ids), self.truth_nll)]
            tokens = [len(d) + 1 for d in self.truth_ids]
            # KL(truth || model) per token, estimated on fresh true stories: E[log p - log q] / tokens.
            row["true_excess_ce"] = sum(excess) / sum(tokens)
            row["true_excess_ce_se"] = ratio_se(excess, tokens)
            row["true_excess_nats_per_story"] = sum(excess) / len(excess)
            known = self.truth_known
            row["true_excess_ce_known"] = (sum(excess[i] for i in known) / sum(tokens[i] for i in known)) if known else None
        return row

    def corpus_perplexity(self, model, texts: list[str], seed: int) -> float:
        """Perplexity on eval.confidence_docs seeded documents of the texts (the same ones for the same seed)."""
        k = min(self.cfg.confidence_docs, len(texts))
        ids = encode(self.tokenizer, [texts[i] for i in sorted(random.Random(seed).sample(range(len(texts)), k))])
        return perplexity.perplexity(self._nll(model, ids), ids)

    def _nll(self, model, ids: list[list[int]]) -> list[float]:
        return perplexity.document_nll(model, ids, self.eos, self.cfg.batch_size, self.autocast)

    def corpus_metrics(self, texts: list[str], seed: int, whole: list[str] | None = None) -> dict:
        """Figures of a corpus's text; whole: the same documents with their prompts, which the grammar needs."""
        cfg = self.cfg
        whole = texts if whole is None else whole
        sample = diversity.fixed_size_sample(texts, cfg.sample_words, seed)
        counts = tail.word_counts(sample)
        human = self.human.counts
        row = diversity.report(sample, cfg.self_bleu_pairs, seed)
        row.update(shape.report(counts, human, self.rare, cfg.kl_alpha))
        row["loop_rate"] = degeneration.loop_rate(sample)
        if human:
            row.update(tail.report(self.human, sample))
            n_tokens = cfg.sample_tokens or cfg.sample_words
            id_sample = diversity.fixed_size_sample(texts, n_tokens, seed, lambda t: encode(self.tokenizer, [t])[0].tolist())
            row["rare_id_recall"] = tail.recall(self.rare_ids, id_sample)
            row["eval_tokens"] = sum(map(len, id_sample))
        row["eval_words"] = sum(map(len, sample))
        if cfg.embedding_model:
            row["semantic_diversity"] = self.semantic_diversity(texts, seed)
        if self.world is not None:
            hit = [w for w in self.true_rare if w in counts]
            row["true_tail_recall"] = len(hit) / len(self.true_rare)
            row["true_tail_mass_recall"] = sum(self.true_rare[w] for w in hit) / sum(self.true_rare.values())
            row["validity_rate"] = sum(map(self.world.is_valid, whole)) / len(whole)
            row["grammar_rate"] = sum(map(self.world.is_grammatical, whole)) / len(whole)
            row["valid_prefix"] = sum(map(self.world.valid_prefix, whole)) / len(whole)
        return row

    def semantic_diversity(self, texts: list[str], seed: int) -> float:
        """Mean pairwise cosine distance of eval.embedding_docs seeded documents' embeddings."""
        if self.embedder is None:
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.embedder = semantic.load(self.cfg.embedding_model, device)
        k = min(self.cfg.embedding_docs, len(texts))
        picked = [texts[i] for i in sorted(random.Random(seed).sample(range(len(texts)), k))]
        return semantic.mean_cosine_distance(semantic.embed(picked, *self.embedder, batch_size=self.cfg.batch_size))

    def reference(self, seed: int, say=None) -> dict:
        """Human text scored like a synthetic corpus: what 'no collapse' looks like at the same size.

        storyworld draws fresh stories from the truth, as many as the size needs;
        other corpora use the held-out split, which may hold fewer words, and then
        the row says so, since recall and distinct-n are not comparable across sizes.
        """
        if seed not in self._references:
            if self.world is not None:
                n = math.ceil(1.2 * self.cfg.sample_words / self.world.expected_words_per_story()) + 1
                texts, source = self.world.sample(n, seed), f"{self.source} (fresh stories)"
            else:
                texts, source = self.heldout_texts, "held-out split"
            row = {"source": source, **self.corpus_metrics(texts, seed), **self._rare_sizes()}
            row.update(self.length_metrics([len(ids) for ids in encode(self.tokenizer, texts)]))
            row["comparable"] = row["eval_words"] == self.cfg.sample_words
            if not row["comparable"] and say:
                say(f"note: the human reference has {row['eval_words']:,} words, fewer than eval.sample_words="
                    f"{self.cfg.sample_words:,}; reference.json is not comparable with the generations")
            if "eval_tokens" in row:  # the id sample has a size of its own (eval.sample_tokens)
                n_tokens = self.cfg.sample_tokens or self.cfg.sample_words
                row["comparable_ids"] = row["eval_tokens"] == n_tokens
                if not row["comparable_ids"] and say:
                    say(f"note: the human reference has {row['eval_tokens']:,} tokens, fewer than eval.sample_tokens="
                        f"{n_tokens:,}; rare_id_recall_rel is left null")
            self._references[seed] = row
        return dict(self._references[seed])

    def _rare_sizes(self) -> dict:
        return {"rare_types": len(self.rare), "rare_bigram_types": len(self.human.rare_bigrams),
                "rare_id_types": len(self.rare_ids)}

    @staticmethod
    def length_metrics(lengths: list[int]) -> dict:
        row = {"mean_doc_tokens": sum(lengths) / len(lengths) if lengths else 0.0}
        row.update({f"doc_tokens_{k}": v for k, v in degeneration.length_quantiles(lengths).items()})
        return row

    def evaluate(self, model, texts: list[str], samples, seed: int, gen0_texts: list[str] | None = None) -> dict:
        """Generation g's row. gen0_texts, generation 0's corpus, adds gen0_ppl: model g's perplexity on it."""
        row = self.model_metrics(model)
        row["self_ppl"] = self.corpus_perplexity(model, texts, seed)
        if gen0_texts is not None:
            same = gen0_texts is texts or gen0_texts == texts  # generation 0 itself
            row["gen0_ppl"] = row["self_ppl"] if same else self.corpus_perplexity(model, gen0_texts, seed)
        # A human prompt is not what the model wrote: the corpus figures count only its continuation.
        written = written_texts(self.tokenizer, samples, texts)
        row.update(self.corpus_metrics(written, seed, whole=texts))
        if self.human.counts:
            row.update(relative(row, self.reference(self.reference_seed if self.reference_seed is not None else seed)))
        row.update(self._rare_sizes())
        row["ended_rate"] = sum(s.ended for s in samples) / len(samples)
        # The whole document, as reference.json counts human ones: a human prompt included, its leading end token not.
        row.update(self.length_metrics([len(s.prompt) - 1 + len(s.tokens) for s in samples]))
        return row


def ratio_se(num: list[float], den: list[float]) -> float | None:
    """Standard error of the ratio estimator sum(num) / sum(den) over independent pairs (None below two).

    Delta method: the residuals num_i - R den_i carry the error, so
    se = sqrt(sum(r_i^2) / (N (N - 1))) / mean(den). Stories, not tokens, are the
    independent draws: the tokens inside one story are not.
    """
    n = len(num)
    if n < 2:
        return None
    r = sum(num) / sum(den)
    return math.sqrt(sum((x - r * d) ** 2 for x, d in zip(num, den)) / (n * (n - 1))) / (sum(den) / n)


def relative(row: dict, reference: dict) -> dict:
    """Each recall over the same recall of human text of the same size (1: as much of the tail as human text keeps).

    None when the two samples differ in size: the reference's is not comparable (fewer words than
    eval.sample_words, or for rare_id_recall fewer tokens than eval.sample_tokens), or the generation wrote fewer
    than that itself. Recall grows with sample size, so a ratio across sizes would measure the sizes, not the tail
    (a model that writes little would read as collapsing).
    """
    def ratio(a, b, comparable):
        return a / b if a is not None and b and comparable else None

    words = reference["comparable"] and row.get("eval_words") == reference.get("eval_words")
    ids = reference.get("comparable_ids") and row.get("eval_tokens") == reference.get("eval_tokens")
    out = {f"{k}_rel": ratio(row[k], reference[k], ids if k == "rare_id_recall" else words) for k in RECALLS}
    out["recall_by_band_rel"] = {b: ratio(row["recall_by_band"][b], reference["recall_by_band"][b], words)
                                 for b in tail.BANDS}
    return out

