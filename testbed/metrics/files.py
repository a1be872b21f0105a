"""`testbed eval`: the metrics suite on a text file, outside any run.

The file's documents are scored as a synthetic corpus (diversity, shape,
degeneration) and, with --model, as held-out text for that model. With
--human, the human text defines the frequency bands, so the tail figures
(rare recall, tail mass, KL and JS, perplexity by band) are added; without
it they are left out rather than measured against nothing.
"""
import json
import re
from pathlib import Path

from testbed import TestbedError, first_line


def _is_text(s: str) -> bool:
    """False for a string holding a lone surrogate (JSON's "\\ud800" alone), which no encoder can write."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_texts(path: str | Path, written: bool = True) -> list[str]:
    """Documents of a .jsonl file (its "text" field, or "written" where a corpus.jsonl has one, unless written=False),
    or of any other file one per line."""
    path = Path(path)
    if not path.is_file():
        raise TestbedError(f"{path}: {'a folder, not a file' if path.is_dir() else 'file not found'}")
    if path.suffix.lower() in (".json", ".parquet"):  # read a line at a time, each would be one "document"
        raise TestbedError(f"{path}: a {path.suffix} file; testbed eval reads a .jsonl (a \"text\" field a line) or "
                           "text with one document a line: convert it to one of those")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TestbedError(f"{path}: not UTF-8 (invalid byte at offset {e.start}); re-encode the file as UTF-8") from None
    # Lines end at "\n" only (read_text has turned \r\n and \r into it), as `datasets` splits a local corpus:
    # str.splitlines would also cut at U+2028, U+0085 and the like, which a JSON string may hold raw.
    lines = text.split("\n")
    if path.suffix != ".jsonl":
        return [line.strip() for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise TestbedError(f"{path}: line {number} is not valid JSON ({first_line(e)}); fix or remove that line") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            found = type(row.get("text")).__name__ if isinstance(row, dict) and "text" in row else "no \"text\" field"
            raise TestbedError(f"{path}: line {number} must be a JSON object with a \"text\" string (found {found}); "
                               "fix or remove that line")
        if not all(_is_text(v) for v in (row["text"], row.get("written")) if isinstance(v, str)):
            raise TestbedError(f"{path}: line {number} holds a lone surrogate escape (such as \\ud800), which is no "
                               "character the tokenizer can read; fix or remove that line")
        # A corpus.jsonl of sample.prompt=human keeps what the model wrote after the prompt as `written`: the
        # loop's metrics count that, and so does testbed eval.
        part = row.get("written") if written else None
        texts.append(part if isinstance(part, str) else row["text"])
    return texts


def check_model(model: str) -> None:
    """--model is a saved model folder; one of a finished generation must match its DONE marker."""
    path = Path(model)
    if not path.exists():
        raise TestbedError(f"--model {model}: not found; give a saved model folder, such as RUN/gen_002/model")
    if path.is_file():
        raise TestbedError(f"--model {model}: a file; give the folder that holds it and its config.json ({path.parent})")
    if not (path / "config.json").is_file():
        raise TestbedError(f"--model {model}: not a saved model folder (no config.json); give one such as RUN/gen_002/model")
    gen = path.resolve().parent
    if path.name == "model" and gen.name.startswith("gen_") and (gen / "DONE").exists() and gen.name[4:].isdigit():
        from testbed.rundir import RunDir

        RunDir(gen.parent).verify(int(gen.name[4:]), "model/")


def find_tokenizer(model: str | None, tokenizer: str | None) -> Path:
    """--tokenizer, else the run's when the model lies in a run directory (RUN/gen_NNN/model), else the model's own."""
    candidates = [tokenizer] if tokenizer else [Path(model).parent.parent / "tokenizer", model] if model else []
    for c in candidates:
        if (Path(c) / "tokenizer.json").is_file() or (Path(c) / "tokenizer_config.json").is_file():
            return Path(c)
    if tokenizer:
        what = "not found" if not Path(tokenizer).exists() else "not a tokenizer folder (no tokenizer.json or tokenizer_config.json)"
        raise TestbedError(f"--tokenizer {tokenizer}: {what}; give a run's tokenizer/ folder, such as RUN/tokenizer")
    raise TestbedError("no tokenizer found: pass --tokenizer PATH (a run's tokenizer/ directory)")


def eval_config(overrides: list[str] = ()):
    """`testbed eval`'s config: the defaults and the overrides (key=value), read as a local corpus."""
    from testbed.config import load_config

    # The metrics read their own settings and which source's truth to score against: any other key (train.lr, seed,
    # data.text_field: the file is read as read_texts says) would be taken and change nothing.
    for o in overrides:
        key = o.partition("=")[0].strip()
        if "=" in o and key.split(".")[0] != "eval" and key != "data.source":  # load_config names a malformed one
            fix = ("use --seed N (seed= of the evaluate module's compute)" if key == "seed" else
                   "it reads a .jsonl's \"text\" field, or one document a line, whatever data.* says; drop it"
                   if key.startswith("data") else "drop it")
            raise TestbedError(f"{o}: eval reads only the eval.* and data.source keys, not {key}; {fix}")
    # Not storyworld unless asked: its exact metrics assume text written in its grammar. The path only names
    # the local source (the texts come from the command line), and another source refuses one.
    asked = [o.partition("=")[2].strip() for o in overrides if o.partition("=")[0].strip() == "data.source"]
    local = not asked or asked[-1] == "local"
    return load_config(None, ["data.source=local", *(["data.path=-"] if local else []), *overrides])


def run_of(model: str | None) -> Path | None:
    """The run directory a --model lies in (RUN/gen_NNN/model beside RUN/config.yaml), else None."""
    path = Path(model).resolve() if model else None
    if path and path.name == "model" and re.fullmatch(r"gen_\d{3}", path.parent.name) and \
            (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def evaluate_file(text: str, model: str | None = None, human: str | None = None, tokenizer: str | None = None,
                  overrides: list[str] = (), seed: int | None = None, say=print) -> dict:
    """seed: of the fixed-size samples; None: the run's, where --model lies in one, else 0. A model of a run scores
    with that run's eval.* settings and seeds (the user's overrides over them), so that a generation's own
    corpus reads here as in its metrics.json: the same samples, and under data.source=storyworld the same true
    stories."""
    truth_seed, notes = 0, []
    if run := run_of(model):
        from dataclasses import fields

        from testbed.config import load_saved, yaml_value
        from testbed.seeds import eval_seed, stage_seed

        saved = load_saved(run / "config.yaml")
        overrides = [*(f"eval.{f.name}={yaml_value(getattr(saved.eval, f.name))}" for f in fields(saved.eval)),
                     *overrides]
        seed = eval_seed(saved.seed) if seed is None else seed
        truth_seed = stage_seed(saved.seed, 0, "truth")
        notes.append(f"--model lies in run {run}: scored with its eval settings and seeds (seed={saved.seed})")
    cfg = eval_config(overrides)
    seed = 0 if seed is None else seed
    texts = read_texts(text)
    if not texts:
        raise TestbedError(f"{text}: no documents")
    human_texts = read_texts(human) if human else []
    if human and not human_texts:  # else the tail figures would be left out as if --human had not been given
        raise TestbedError(f"--human {human}: no documents")
    if model:
        check_model(model)
    return evaluate_texts(cfg, texts, human_texts, find_tokenizer(model, tokenizer), seed, model, say,
                          whole=read_texts(text, written=False), truth_seed=truth_seed, notes=notes)


def evaluate_texts(cfg, texts: list[str], human_texts: list[str], tokenizer: str | Path, seed: int = 0,
                   model: str | None = None, say=print, whole: list[str] | None = None, truth_seed: int = 0,
                   notes: list[str] = ()) -> dict:
    """`testbed eval` on documents in memory, the row it prints. The evaluate module (testbed/metrics/hf/collapse)
    calls this too, so the two cannot disagree. whole: the documents with their human prompts, where `texts` is
    what a model wrote after them (sample.prompt=human): the model's perplexity and the grammar read whole
    documents, as the loop's do; the word figures read only what the model wrote."""
    whole = texts if whole is None else whole
    from testbed.metrics.suite import Evaluator
    from testbed.model import load_model
    from testbed.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    loaded = None
    if model:
        import torch

        loaded = load_model(model, "cuda" if torch.cuda.is_available() else "cpu")
        # A testbed model's vocabulary is its tokenizer's, id for id: another tokenizer reads other words into the
        # ids, and its perplexity would be a number about nothing (or, with more ids than the model, an IndexError).
        if loaded.config.vocab_size != len(tok):
            raise TestbedError(f"--tokenizer {tokenizer}: {len(tok):,} tokens, but the model at {model} has a vocabulary "
                               f"of {loaded.config.vocab_size:,}: give the tokenizer it was trained with (its run's "
                               "tokenizer/ folder)")
    ev = Evaluator(cfg, tok, human_texts, whole, truth_seed=truth_seed)
    for note in [*notes, *ev.notes]:  # once every input is checked: an error stays the only line
        say(note)
    row = {}
    if loaded is not None:
        row.update({k.replace("heldout_", "", 1): v for k, v in ev.model_metrics(loaded).items()})
    row.update(ev.corpus_metrics(texts, seed, whole=whole))
    row["documents"] = len(texts)
    return row
