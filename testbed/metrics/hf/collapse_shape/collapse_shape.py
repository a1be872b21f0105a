"""Unigram entropy, Zipf slope and types used of a seeded fixed-size word sample; with human text, KL and JS divergence from it and the tail mass (testbed.metrics.shape)."""
import datasets
import evaluate

from testbed.metrics import diversity, shape, tail
from testbed.text import words

_INPUTS = """
Args:
    data (list of str): the corpus, one document per item.
    human (list of str, optional): human training text: the reference distribution and its rare band.
    sample_words (int): size of the seeded sample (default 20000).
    seed (int): seed of the sample (default 0).
    rare_max_freq (float): rare = human word types seen at most floor(rare_max_freq * human words) times (default 5e-5).
    kl_alpha (float): add-alpha smoothing of both distributions in the KL divergence (default 1).
Returns:
    entropy_1 (bits), zipf_slope, vocab_used; with human: unigram_kl, unigram_js (bits), tail_mass.
"""


class CollapseShape(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(module_type="measurement", description=__doc__, citation="",
                                        inputs_description=_INPUTS,
                                        features=datasets.Features({"data": datasets.Value("string")}))

    def _compute(self, data, human=None, sample_words=20_000, seed=0, rare_max_freq=5e-5, kl_alpha=1.0):
        counts = tail.word_counts(diversity.fixed_size_sample(data, sample_words, seed))
        human_counts = tail.word_counts(words(t) for t in human) if human else None
        rare = tail.rare_types(human_counts, tail.rare_threshold(human_counts, rare_max_freq)) if human else None
        return shape.report(counts, human_counts, rare, kl_alpha)
