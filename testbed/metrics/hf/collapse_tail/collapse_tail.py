"""Recall of the human tail by a seeded fixed-size word sample: rare words, their frequency-weighted share, rare bigrams, and recall per frequency band (testbed.metrics.tail)."""
import datasets
import evaluate

from testbed.metrics import diversity, tail
from testbed.text import words

_INPUTS = """
Args:
    data (list of str): the corpus, one document per item.
    human (list of str): human training text, which defines the rare band and the frequency bands.
    sample_words (int): size of the seeded sample (default 20000).
    seed (int): seed of the sample (default 0).
    rare_max_freq (float): rare = human words (bigrams) seen at most floor(rare_max_freq * their total) times (default 5e-5).
    rare_quantile (float, optional): instead, rare = types up to this quantile of the human type counts.
    common_mass (float): common = the most frequent types covering this share of human words (default 0.5).
Returns:
    rare_token_recall, rare_mass_recall, recall_by_band (rare / middle / common), rare_bigram_recall.
"""


class CollapseTail(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(module_type="measurement", description=__doc__, citation="",
                                        inputs_description=_INPUTS,
                                        features=datasets.Features({"data": datasets.Value("string")}))

    def _compute(self, data, human, sample_words=20_000, seed=0, rare_max_freq=5e-5, rare_quantile=None, common_mass=0.5):
        bands = tail.Human([words(t) for t in human], rare_max_freq, rare_quantile, common_mass)
        return tail.report(bands, diversity.fixed_size_sample(data, sample_words, seed))
