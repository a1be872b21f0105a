"""Human corpora: the Hugging Face Hub, local files, or the built-in storyworld.

Every source goes through `datasets` and comes out as a plain list of
document strings, so the rest of the run never asks where text came from.
"""
import codecs
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from testbed import TestbedError, first_line
from testbed.config import DataConfig, check_registry
from testbed.corpus.truth import Truth

_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "true/false",
               type(None): "null"}
_OFFLINE_OPTIONS = "offline options: data.source=storyworld (built in), or data.source=local data.path=FILE"


def source_name(data: DataConfig) -> str:
    """Provenance label of the human documents."""
    if data.source == "hub":
        return f"hub:{data.name}" + (f"/{data.subset}" if data.subset else "")
    if data.source == "local":
        return f"local:{Path(data.path).name}"
    return data.source


def load_documents(data: DataConfig, seed: int) -> list[str]:
    """The human corpus as non-empty, whitespace-stripped documents."""
    rows = SOURCES[data.source].load(data, seed)
    docs = []
    # Shown only when loading takes more than a few seconds (a large file, the Hub).
    bar = tqdm(desc=f"loading {source_name(data)}", unit="docs", total=data.max_docs, delay=3, disable=None,
               leave=False, file=sys.stderr)
    try:
        for text in _texts(rows, data):
            text = text.strip()
            if text:
                docs.append(text)
                bar.update()
                if data.max_docs is not None and len(docs) >= data.max_docs:
                    break
    except Exception as e:  # streaming parses while iterating: a malformed row surfaces here
        _raise_bad_line(data)
        if isinstance(e, TestbedError):
            raise
        where = {"local": f"data.path={data.path}", "hub": f"data.name={data.name}"}.get(data.source,
                                                                                        f"data.source={data.source}")
        raise TestbedError(f"{where}: could not be read after {len(docs)} documents ({_first_line(e)})") from None
    finally:
        bar.close()
    if not docs:
        where = data.path if data.source == "local" else source_name(data)
        raise TestbedError(f"{where}: the corpus is empty (no non-blank documents); check data.separator and data.text_field")
    return docs


def truth(data: DataConfig) -> Truth | None:
    """The source's generator when it is known (see testbed/corpus/truth.py), else None."""
    make = SOURCES[data.source].truth
    return make() if make else None


def _storyworld_truth() -> Truth:
    from testbed.corpus.storyworld import StoryWorld

    return StoryWorld()


def _storyworld(data: DataConfig, seed: int):
    from datasets import Dataset

    return Dataset.from_dict({data.text_field: _storyworld_truth().sample(data.docs, seed)})


_BLANK_LINE = re.compile(r"\r?\n[ \t]+\r?\n")


def check_file(data: DataConfig) -> None:
    """data.source=local: that the file is there and can be read as its suffix says, as loading it checks first.
    A sweep or a lab checks each of its files so before the first run starts, not when that run's turn comes."""
    if data.source != "local":
        return
    path = Path(data.path)
    if not path.is_file():
        raise TestbedError(f"data.path={data.path}: {'a folder' if path.is_dir() else 'file not found'} (from {Path.cwd()}); "
                           "set data.path= to a .txt, .jsonl, .json or .parquet corpus (relative paths start where testbed "
                           "runs)")
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise TestbedError(f"data.path={data.path}: unsupported suffix {path.suffix!r}; use one of {', '.join(_BUILDERS)}")
    if builder != "parquet":
        _check_utf8(path)
    else:  # datasets fails on a file of no rows with pyarrow's "BatchSize must be greater than 0"
        import pyarrow.parquet

        try:
            rows = pyarrow.parquet.ParquetFile(path).metadata.num_rows
        except Exception as e:  # pyarrow's own error types for a file that is not parquet
            raise TestbedError(f"data.path={data.path}: could not be read as parquet ({_first_line(e)})") from None
        if rows == 0:
            raise TestbedError(f"{data.path}: the corpus is empty (no rows); give a .parquet file with a row a document")
    if builder == "text" and data.separator not in ("line", "paragraph"):
        _check_separator(data, path)
    if builder == "json":  # datasets infers the schema from the first rows: of none, it fails with a StopIteration
        with open(path, encoding="utf-8-sig") as f:
            if not any(line.strip() for line in f):
                raise TestbedError(f"{data.path}: the corpus is empty (no rows); give a .jsonl file with one JSON "
                                   "object a line")
        _check_json_array(path, data)


def _local(data: DataConfig, seed: int):
    import glob

    from datasets import load_dataset

    check_file(data)
    path, builder = Path(data.path), _BUILDERS[Path(data.path).suffix.lower()]
    kwargs = {}
    if builder == "text":
        kwargs["encoding"] = "utf-8-sig"  # a byte-order mark is not text
        kwargs["sample_by"] = data.separator if data.separator in ("line", "paragraph") else "document"
    # Streaming reads the file where it lies instead of copying it into an Arrow cache.
    try:
        # Escaped: datasets reads data_files as a pattern, and "corpus[1].txt" would read corpus1.txt instead.
        return load_dataset(builder, data_files=glob.escape(str(path)), split="train", streaming=True, **kwargs)
    except Exception as e:  # datasets wraps parse errors in several types
        _raise_bad_line(data)
        raise TestbedError(f"data.path={data.path}: could not be read as {builder} ({_first_line(e)})") from None


def _hub(data: DataConfig, seed: int):
    from datasets import load_dataset

    if Path(data.name).is_file():  # datasets takes a path as a folder and finds "no data file" in it (offline: no Hub)
        raise TestbedError(f"data.name={data.name}: a file; data.source=hub reads a Hub dataset or a dataset "
                           f"folder: for a file, data.source=local data.path={data.name}")
    try:
        rows = load_dataset(data.name, data.subset, split=data.split, streaming=True)
        first = next(iter(rows.take(1)), None)
    except (ConnectionError, TimeoutError) as e:  # datasets raises ConnectionError when offline, too
        raise TestbedError(
            f"data.name={data.name}: the Hugging Face Hub could not be reached ({_first_line(e)}); {_OFFLINE_OPTIONS}"
        ) from None
    except Exception as e:
        # "Config name is missing." is followed by the choices, on the next line: they are the fix.
        choices = re.search(r"available configs: (\[.*?\])", str(e))
        if choices:
            raise TestbedError(f"data.name={data.name}" + (f" data.subset={data.subset}" if data.subset else "") +
                               f": choose its subset, one of {choices.group(1)}, with data.subset=NAME") from None
        raise TestbedError(f"data.name={data.name}" + (f" data.subset={data.subset}" if data.subset else "") +
                           f" split={data.split}: could not be loaded ({_first_line(e)})") from None
    if first is not None and data.text_field not in first:
        raise TestbedError(f"data.text_field={data.text_field}: no such column in {data.name}; columns: {', '.join(first)}")
    return rows


def _check_json_array(path: Path, data: DataConfig) -> None:
    """A .json array whose text field holds one number or object among its strings is read by datasets as a
    column of JSON text: every document would come quoted and escaped ("\"Once...\""), without an error.
    So an array is checked row by row first (it is read whole anyway: an array cannot be streamed)."""
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(4096).lstrip()
        if not head.startswith("["):
            return  # JSON lines: datasets reads them row by row, and _texts checks each value
        f.seek(0)
        try:
            rows = json.load(f)
        except (ValueError, RecursionError) as e:  # nested past Python's stack: no corpus either
            raise TestbedError(f"data.path={data.path}: not valid JSON ({_first_line(e)})") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):  # no data.text_field would help: the array holds no objects to name one of
            raise TestbedError(f"data.path={data.path}: row {number} is a JSON {_JSON_TYPES.get(type(row), 'null')}, "
                               f"not an object with a {data.text_field!r} field; give an array of objects "
                               f"({{\"{data.text_field}\": \"...\"}}), or one document a line in a .txt")
        value = row.get(data.text_field)
        if not (value is None or isinstance(value, str)):
            raise TestbedError(f"data.text_field={data.text_field}: row {number} of {data.path} holds "
                               f"{_JSON_TYPES.get(type(value), type(value).__name__)}, not text; fix that row or "
                               "choose another data.text_field")


def _texts(rows, data: DataConfig):
    txt = data.source == "local" and Path(data.path).suffix.lower() == ".txt"
    field = "text" if txt else data.text_field  # a .txt file has no fields: datasets puts its text in "text"
    for number, row in enumerate(rows, 1):
        if field not in row:
            raise TestbedError(
                f"data.text_field={data.text_field}: no such field in {data.path or data.name}; fields: {', '.join(row)}"
            )
        text = row[field]
        if text is None:  # pyarrow fills a field a row lacks with null: the row may simply not have it
            raise TestbedError(f"data.text_field={data.text_field}: row {number} of {data.path or data.name} has no "
                               "text (the field is null or missing); fix that row or choose another data.text_field")
        if not isinstance(text, str):
            raise TestbedError(f"data.text_field={data.text_field}: row {number} of {data.path or data.name} holds "
                               f"{type(text).__name__}, not text; fix that row or choose another data.text_field")
        if txt and data.separator not in ("line", "paragraph"):
            separator = data.separator.replace("\r\n", "\n")  # the file is read with its line ends made "\n"
            if separator not in text and text.strip():
                raise _separator_missing(data)
            yield from text.split(separator)
        elif txt and data.separator == "paragraph":
            # datasets splits paragraphs at "\n\n" only; a line of spaces or tabs looks blank and parts them too.
            yield from (part for part in _BLANK_LINE.split(text) if part.strip())
        else:
            yield text


def _raise_bad_line(data: DataConfig) -> None:
    """After datasets failed on a local .jsonl file: name its first line that is not a JSON object with a text
    field, since pyarrow counts rows in blocks and never says which line of the file it meant."""
    if data.source != "local" or Path(data.path).suffix.lower() != ".jsonl":
        return
    field = data.text_field
    rows_before = 0
    with open(data.path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fix = "fix or remove that line"
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:
                problem = f"is not valid JSON ({e})"
            else:
                if not isinstance(row, dict):
                    problem = f"is a JSON {_JSON_TYPES[type(row)]}, not an object with a {field!r} field"
                elif field not in row:
                    if rows_before == 0:
                        return  # not even the first row has it: the field's name is wrong, which _texts says
                    problem = f"has no {field!r} field (fields: {', '.join(row) or 'none'})"
                    fix = "set data.text_field, or " + fix
                elif not isinstance(row[field], str):
                    found = "null" if row[field] is None else type(row[field]).__name__
                    problem = f"data.text_field={field}: expected text, found {found}"
                else:
                    rows_before += 1
                    continue
            raise TestbedError(f"data.path={data.path}: line {number}{':' if problem.startswith('data.') else ''} {problem}; {fix}")


def _separator_missing(data: DataConfig) -> TestbedError:
    return TestbedError(f"data.separator={data.separator!r} does not occur in {data.path}, so the whole file would be "
                        "one document; use line, paragraph or a string that parts its documents")


def _check_separator(data: DataConfig, path: Path) -> None:
    """As loading finds it, but before a sweep's first run rather than at this one's turn: read a MiB at a time, the
    chunks overlapping by the separator's length less one so that one cut in two is still found."""
    separator = data.separator.replace("\r\n", "\n")
    tail, blank = "", True
    with open(path, encoding="utf-8", newline=None) as f:  # line ends made "\n", as datasets reads a text file
        while chunk := f.read(1 << 20):
            if separator in tail + chunk:
                return
            blank = blank and not chunk.strip()
            tail = (tail + chunk)[-(len(separator) - 1):] if len(separator) > 1 else ""
    if not blank:
        raise _separator_missing(data)


def _check_utf8(path: Path) -> None:
    """Fail with the byte offset of the first invalid byte, before datasets fails deep inside a worker."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            carried = len(decoder.getstate()[0])  # bytes of a character begun in the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise TestbedError(
                    f"data.path={path}: not UTF-8 (invalid byte at offset {offset - carried + e.start}); "
                    "re-encode the file as UTF-8"
                ) from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise TestbedError(f"data.path={path}: not UTF-8 (truncated character at the end); re-encode the file as UTF-8") from None


def _first_line(e: Exception) -> str:
    line = first_line(e)
    return line if line == type(e).__name__ else f"{type(e).__name__}: {line}"


@dataclass
class Source:
    load: Callable[[DataConfig, int], object]  # (data config, seed) -> a datasets.Dataset or IterableDataset
    truth: Callable[[], Truth] | None = None  # its generator, for sources that have one


# data.source -> how to load it. A new source is a loader here (and its name in DataConfig.source).
SOURCES = {"storyworld": Source(_storyworld, _storyworld_truth), "local": Source(_local), "hub": Source(_hub)}
check_registry(SOURCES, DataConfig, "data.source")
