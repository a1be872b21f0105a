"""distinct-1..4, n-gram entropy, self-BLEU and compression ratio of a seeded fixed-size word sample (testbed.metrics.diversity)."""
import datasets
import evaluate

from testbed.metrics import diversity

_INPUTS = """
Args:
    data (list of str): the corpus, one document per item.
    sample_words (int): size of the seeded sample every figure is computed on (default 20000).
    seed (int): seed of the sample and of the self-BLEU pairs (default 0).
    self_bleu_pairs (int): ordered document pairs averaged for self-BLEU (default 500).
Returns:
    distinct_1..4, entropy_2, entropy_3 (bits), self_bleu (0..1), compression_ratio, eval_words.
"""


class CollapseDiversity(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(module_type="measurement", description=__doc__, citation="",
                                        inputs_description=_INPUTS,
                                        features=datasets.Features({"data": datasets.Value("string")}))

    def _compute(self, data, sample_words=20_000, seed=0, self_bleu_pairs=500):
        sample = diversity.fixed_size_sample(data, sample_words, seed)
        return {**diversity.report(sample, self_bleu_pairs, seed), "eval_words": sum(map(len, sample))}
