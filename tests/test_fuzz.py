"""Seeded random malformed configs and corpora: each ends in a valid result or a TestbedError, never another exception."""
import json
import random

import pytest
import yaml

from testbed import TestbedError
from testbed.config import Config, DataConfig, load_config, to_dict
from testbed.corpus.sources import load_documents

# Values of every wrong type and range, as YAML text would give them.
VALUES = [None, -1, 0, 1, 2, -10**30, 10**30, 10**400, 0.5, -0.5, 1e308, "abc", "", " ", "1e-5", "null", True, False,
          [], [1, "x"], {}, {"a": 1}, ["human"], "tensorboard", "line", "a" * 300, "é✓", float("inf"), float("nan"),
          "../nope", "/dev/null"]
# Override values as typed on the command line: broken YAML among them.
TEXTS = ["[1", "{a", "@x", "`", "!!python/object:os.system", "1e999", "-.inf", ".nan", "0x10", "'quoted", '"x"', "",
         "null", "~", "yes", "no", "3", "-3", "1.5", "[a, b]", "{x: 1}", "%", "*alias", "&anchor x", "a: b", "- 1",
         "10000000000000000000000", "1" * 400, "\t", "caf\u00e9"]


def leaves(d: dict, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def setting(d: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        d = d[p]
    d[leaf] = value


def outcome(fn, *args):
    """'ok' or 'error' for a valid result or a TestbedError; any other exception fails the test."""
    try:
        fn(*args)
        return "ok"
    except TestbedError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return "error"


def random_config(rng: random.Random, tmp_path, i: int):
    """(path, overrides) of one malformed config."""
    raw = to_dict(Config())
    keys = list(leaves(raw))
    for _ in range(rng.randint(0, 2)):
        setting(raw, rng.choice(keys), rng.choice(VALUES))
    kind = rng.randrange(8)
    if kind == 0:
        raw[rng.choice(["model.n_layers", "mix", "data", "nope", "eval", 7])] = rng.choice(VALUES)  # unknown key, section
    path = tmp_path / f"c{i}.yaml"
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    if kind == 1:
        text = text[: rng.randrange(len(text))]  # cut anywhere
    elif kind == 2:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice([":", "\t", "[", "{", "- ", "  ", "'", "\n  x"]) + text[at:]
    elif kind == 3:
        text = f"base: {rng.choice(['missing.yaml', path.name, '[1]', '5'])}\n" + text  # missing, itself, wrong type
    elif kind == 4:
        text = rng.choice(["", "- 1\n- 2\n", "7\n", "null\n", "'x'\n", "{{{\n", "a: [\n"])
    path.write_text(text, encoding="utf-8")
    if kind == 5:
        path.write_bytes(text.encode("utf-8")[:40] + bytes([0xFF, 0xFE, 0xE9]) + text.encode("utf-8")[40:])
    elif kind == 6:
        path = tmp_path / rng.choice(["gone.yaml", ""])  # missing, a folder
    overrides = []
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(keys + ["generations.x", "data..path", "", "=", "model", "track[0]", "curate.nope.x"])
        overrides.append(rng.choice([f"{key}={rng.choice(TEXTS)}", key]))
    return path, overrides


def test_malformed_configs_end_in_a_testbed_error_or_a_valid_config(tmp_path):
    rng = random.Random(14)
    seen = {"ok": 0, "error": 0}
    for i in range(400):
        path, overrides = random_config(rng, tmp_path, i)
        try:
            seen[outcome(load_config, path, overrides)] += 1
        except AssertionError:
            raise
        except BaseException as e:
            pytest.fail(f"case {i}: {path} {overrides}: {type(e).__name__}: {e}\n{path.read_text(errors='replace') if path.is_file() else ''}")
    assert seen["error"] >= 200, seen


def random_corpus(rng: random.Random, tmp_path, i: int) -> DataConfig:
    suffix = rng.choice([".txt", ".jsonl", ".json", ".parquet", ".csv"])
    path = tmp_path / f"d{i}{suffix}"
    good = [json.dumps({"text": f"the cat {n} sat."}) for n in range(rng.randint(0, 5))]
    kind = rng.randrange(7)
    if kind == 0:
        content = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))  # random bytes
    elif kind == 1:  # bad JSON lines, wrong field types
        bad = rng.choice(['{"text": 5}', '{"text": null}', '{"text": ["a"]}', '{"text": {"a": 1}}', '[1]', '"x"',
                          '{"text": "a', "{", "NaN", '{"body": "x"}', '{"text": true}', "", "\ufeff{}"])
        lines = good + [bad]
        rng.shuffle(lines)
        content = "\n".join(lines).encode("utf-8")
    elif kind == 2:
        content = rng.choice([b"", b"\n\n  \n", b"\xef\xbb\xbf", b"\x00\x00", b"[]", b"{}", b"[{\"text\": 1}]"])
    elif kind == 3:  # valid UTF-8 text of odd characters
        content = "".join(rng.choice("ab \n\t\r\u2028{}[]\":,\\é\x00") for _ in range(rng.randint(0, 300))).encode("utf-8")
    else:
        content = "\n".join(good).encode("utf-8")
    path.write_bytes(content)
    if kind == 6:
        path = tmp_path / rng.choice(["none.txt", "none.jsonl"])  # missing
    return DataConfig(source="local", path=str(path), text_field=rng.choice(["text", "text", "body", ""]),
                      separator=rng.choice(["line", "paragraph", "<|endoftext|>", "\n"]),
                      max_docs=rng.choice([None, None, 1, 3]))


def test_malformed_corpora_end_in_a_testbed_error_or_documents(tmp_path):
    rng = random.Random(9)
    seen = {"ok": 0, "error": 0}
    for i in range(200):
        data = random_corpus(rng, tmp_path, i)
        try:
            docs = []
            seen[outcome(lambda: docs.extend(load_documents(data, 0)))] += 1
        except AssertionError:
            raise
        except BaseException as e:
            pytest.fail(f"case {i}: {data}: {type(e).__name__}: {e}")
        assert all(isinstance(d, str) and d and d == d.strip() for d in docs)
    assert seen["ok"] >= 20 and seen["error"] >= 100, seen
