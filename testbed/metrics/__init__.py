from pathlib import Path

EVALUATE_MODULE = Path(__file__).parent / "hf" / "collapse"


def load_evaluate(**kwargs):
    """testbed's Hugging Face `evaluate` metric: `testbed eval` under evaluate's API, loaded from its local script
    (no Hub access). kwargs go to evaluate.load.

        metric = load_evaluate()
        row = metric.compute(predictions=texts, references=human_texts, tokenizer="runs/quickstart/tokenizer")

    row is the row `testbed eval --text ... --human ... --tokenizer ...` prints for the same text (no model, so no
    perplexity); metric.description lists its keys with their meanings from testbed.metrics.spec.
    """
    # evaluate takes seconds to import; nothing on a run's path should pay for it.
    import evaluate

    return evaluate.load(str(EVALUATE_MODULE), **kwargs)
