"""`testbed eval`: the metrics suite on a text file, outside any run.

The file's documents are scored as a synthetic corpus (diversity, shape,
degeneration) and, with --model, as held-out text for that model. With
--human, the human text defines the frequency bands, so the tail figures
(rare recall, tail mass, KL and JS, perplexity by band) are added; without
it they are left out rather than measured against nothing.
"""
import json
from pathlib import Path

from testbed import TestbedError


def read_texts(path: str | Path) -> list[str]:
    """Documents of a .jsonl file (its "text" field, as in corpus.jsonl), or of any other file one per line."""
    path = Path(path)
    if not path.is_file():
        raise TestbedError(f"{path}: file not found")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line)["text"] for line in lines]
        except (ValueError, KeyError, TypeError):
            raise TestbedError(f"{path}: every line of a .jsonl file must be a JSON object with a \"text\" field") from None
    return [line.strip() for line in lines]


def find_tokenizer(model: str | None, tokenizer: str | None) -> Path:
    """--tokenizer, else the run's when the model lies in a run directory (RUN/gen_NNN/model), else the model's own."""
    candidates = [tokenizer] if tokenizer else [Path(model).parent.parent / "tokenizer", model] if model else []
    for c in candidates:
        if (Path(c) / "tokenizer.json").is_file() or (Path(c) / "tokenizer_config.json").is_file():
            return Path(c)
    raise TestbedError("no tokenizer found: pass --tokenizer PATH (a run's tokenizer/ directory)")


def evaluate_file(text: str, model: str | None = None, human: str | None = None, tokenizer: str | None = None,
                  overrides: list[str] = (), seed: int = 0, say=print) -> dict:
    from testbed.config import load_config
    from testbed.metrics.suite import Evaluator
    from testbed.model import load_model
    from testbed.tokenizer import load_tokenizer

    # Not storyworld unless asked: its exact metrics assume text written in its grammar.
    cfg = load_config(None, ["data.source=local", "data.path=-", *overrides])
    texts = read_texts(text)
    if not texts:
        raise TestbedError(f"{text}: no documents")
    tok = load_tokenizer(find_tokenizer(model, tokenizer))
    ev = Evaluator(cfg, tok, read_texts(human) if human else [], texts)
    for note in ev.notes:
        say(note)
    row = {}
    if model:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        row.update({k.replace("heldout_", "", 1): v for k, v in ev.model_metrics(load_model(model, device)).items()})
    row.update(ev.corpus_metrics(texts, seed))
    row["documents"] = len(texts)
    return row
