"""Share of documents with a repetition loop, and document length in words (testbed.metrics.degeneration)."""
import datasets
import evaluate

from testbed.metrics import degeneration, diversity
from testbed.text import words

_INPUTS = """
Args:
    data (list of str): the corpus, one document per item.
    sample_words (int): size of the seeded sample the loop rate is computed on (default 20000).
    seed (int): seed of the sample (default 0).
Returns:
    loop_rate, and mean_doc_words, doc_words_p10 / p50 / p90 over every document.
"""


class CollapseDegeneration(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(module_type="measurement", description=__doc__, citation="",
                                        inputs_description=_INPUTS,
                                        features=datasets.Features({"data": datasets.Value("string")}))

    def _compute(self, data, sample_words=20_000, seed=0):
        lengths = [len(words(t)) for t in data]
        row = {"loop_rate": degeneration.loop_rate(diversity.fixed_size_sample(data, sample_words, seed)),
               "mean_doc_words": sum(lengths) / len(lengths) if lengths else 0.0}
        row.update({f"doc_words_{k}": v for k, v in degeneration.length_quantiles(lengths).items()})
        return row
