"""`testbed eval --text PREDICTIONS --human REFERENCES` as an evaluate metric: the same function computes the same row.

The predictions are scored as a synthetic corpus (diversity, shape, degeneration and, on storyworld, the grammar's
figures); the references, human text of any length, define the frequency bands that the tail figures (rare recall,
tail mass, KL and JS) need, and without them those figures are left out. Perplexity needs a model and is not computed
here: run `testbed eval --model RUN/gen_NNN/model` for it.
"""
import datasets
import evaluate

from testbed.metrics import spec
from testbed.metrics.files import eval_config, evaluate_texts, find_tokenizer

logger = evaluate.logging.get_logger(__name__)

KEYS = {m.key for m in spec.METRICS if m.corpus}  # the keys Evaluator.corpus_metrics can write
DOCUMENTS = "the number of predictions (testbed eval's count of documents; not a metric, so not in the table)"

_DESCRIPTION = "\n".join([__doc__, "Returns a dict with these keys (see docs/metrics.md for their formulas):",
                          *[f"- {m.key}: {m.meaning}" for m in spec.METRICS if m.key in KEYS],
                          f"- documents: {DOCUMENTS}"])

_INPUTS = """
Args:
    predictions (list of str): the documents to score, as the lines of `testbed eval --text`.
    references (list of str, optional): human training text, as `--human`; it need not have as many documents.
    tokenizer (str): a tokenizer directory (a run's tokenizer/), as `--tokenizer`; the token-id figures need it.
    seed (int): seed of the fixed-size samples, as `--seed` (default 0).
    sample_words (int, optional): words in the sample, the override eval.sample_words (default: the config's).
    overrides (list of str): further key=value overrides, as testbed eval takes them, e.g. data.source=storyworld.
Returns:
    the row testbed eval prints for the same text, less the model's figures; its keys are in the description.
"""


class Collapse(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
                                   features=datasets.Features({"predictions": datasets.Value("string")}))

    def compute(self, *, predictions=None, references=None, **kwargs):
        """testbed eval's row for the predictions, with the references as its human text."""
        # evaluate zips its input columns row by row, and the human corpus need not be as long as the predictions:
        # it reaches _compute as an argument instead of a column.
        return super().compute(predictions=predictions, human=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Adds predictions; the references go to compute."""
        _refuse(references)
        super().add_batch(predictions=predictions, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Adds one prediction; the references go to compute."""
        _refuse(reference)
        super().add(prediction=prediction, **kwargs)

    def _compute(self, predictions, human=None, tokenizer=None, seed=0, sample_words=None, overrides=()):
        if not tokenizer:
            raise ValueError("tokenizer=PATH is required: a tokenizer directory such as RUN/tokenizer")
        if not predictions:
            raise ValueError("no predictions: give at least one document")
        size = [f"eval.sample_words={sample_words}"] if sample_words is not None else []
        return evaluate_texts(eval_config([*overrides, *size]), list(predictions), list(human or []),
                              find_tokenizer(None, tokenizer), seed, say=logger.info)


def _refuse(references):
    if references is not None:
        raise ValueError("pass the references (the human text) to compute(references=...), not to add or add_batch")
