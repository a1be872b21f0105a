"""One generation's metrics row: what metrics.jsonl holds.

Model metrics score model g on held-out human text; corpus metrics score
what model g wrote, cut to eval.sample_words words so every generation and
every run is measured at the same size.
"""
import math

from testbed.metrics import diversity, perplexity, tail
from testbed.text import words
from testbed.tokenizer import encode


class Evaluator:
    headline = ["heldout_ppl", "distinct_2", "rare_token_recall", "true_excess_ce", "validity_rate", "true_tail_recall"]

    def __init__(self, cfg, tokenizer, train_texts: list[str], heldout_texts: list[str], autocast=None,
                 truth_seed: int = 0):
        self.cfg = cfg.eval
        self.eos = tokenizer.eos_token_id
        self.autocast = autocast
        self.heldout_texts = heldout_texts[: cfg.eval.heldout_docs]
        self.heldout = encode(tokenizer, self.heldout_texts)
        self.rare = tail.rare_types(tail.word_counts(words(t) for t in train_texts), cfg.eval.rare_max_count)
        self.world = None
        if cfg.data.source == "storyworld":
            from testbed.corpus.storyworld import DEFAULT_RARE_MAX_PROB, StoryWorld

            self.world = StoryWorld()
            # Fresh stories, the same ones every generation, drawn apart from the training corpus.
            truth = self.world.sample_with_logprob(cfg.eval.truth_docs, truth_seed)
            self.truth_ids = encode(tokenizer, [t for t, _ in truth])
            self.truth_nll = -sum(lp for _, lp in truth)
            self.true_rare = self.world.rare_words(DEFAULT_RARE_MAX_PROB)

    def corpus_metrics(self, texts: list[str], seed: int) -> dict:
        sample = diversity.fixed_size_sample(texts, self.cfg.sample_words, seed)
        row = {f"distinct_{n}": diversity.distinct_n(sample, n) for n in (1, 2, 3)}
        row["rare_token_recall"] = tail.recall(self.rare, sample)
        row["eval_words"] = sum(map(len, sample))
        if self.world is not None:
            seen = {w for d in sample for w in d}
            hit = [w for w in self.true_rare if w in seen]
            row["true_tail_recall"] = len(hit) / len(self.true_rare)
            row["true_tail_mass_recall"] = sum(self.true_rare[w] for w in hit) / sum(self.true_rare.values())
            row["validity_rate"] = sum(map(self.world.is_valid, texts)) / len(texts)
        return row

    def reference(self, seed: int) -> dict:
        """Human text scored like a synthetic corpus: what 'no collapse' looks like at the same size.

        storyworld draws fresh stories from the truth, as many as the size needs;
        other corpora use the held-out split, which may hold fewer words, and then
        the row says so, since recall and distinct-n are not comparable across sizes.
        """
        if self.world is not None:
            n = math.ceil(1.2 * self.cfg.sample_words / self.world.expected_words_per_story()) + 1
            texts, source = self.world.sample(n, seed), "storyworld (fresh stories)"
        else:
            texts, source = self.heldout_texts, "held-out split"
        row = {"source": source, **self.corpus_metrics(texts, seed), "rare_types": len(self.rare)}
        row["comparable"] = row["eval_words"] == self.cfg.sample_words
        return row

    def evaluate(self, model, texts: list[str], samples, seed: int) -> dict:
        nll = perplexity.document_nll(model, self.heldout, self.eos, self.cfg.batch_size, self.autocast)
        row = {
            "heldout_ppl": perplexity.perplexity(nll, self.heldout),
            "heldout_bpb": perplexity.bits_per_byte(nll, self.heldout_texts),
            **self.corpus_metrics(texts, seed),
            "rare_types": len(self.rare),
            "ended_rate": sum(s.ended for s in samples) / len(samples),
            "mean_doc_tokens": sum(len(s.tokens) for s in samples) / len(samples),
        }
        if self.world is not None:
            model_nll = sum(perplexity.document_nll(model, self.truth_ids, self.eos, self.cfg.batch_size, self.autocast))
            tokens = sum(len(d) + 1 for d in self.truth_ids)
            # KL(truth || model) per token, estimated on fresh true stories: E[log p - log q] / tokens.
            row["true_excess_ce"] = (model_nll - self.truth_nll) / tokens
        return row
