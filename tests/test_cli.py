"""Bad input: one clear line naming the key or file, exit status 2, nothing written."""
import subprocess
import sys

import pytest

from testbed.cli import main


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\nmodel:\n  preset: nano\n  context: 64\ntokenizer:\n  vocab_size: 300\n")
    return path


def fails(capsys, tmp_path, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "run").exists(), "a failed run left its directory behind"
    return err


def corpus(tmp_path, content: bytes, name="c.txt"):
    path = tmp_path / name
    path.write_bytes(content)
    return f"data.path={path}"


def test_missing_config_file(capsys, tmp_path):
    fails(capsys, tmp_path, ["run", str(tmp_path / "nope.yaml")], "config file not found", "nope.yaml")
    (tmp_path / "configs").mkdir()
    fails(capsys, tmp_path, ["run", str(tmp_path / "configs")], "config file is a folder", "give a YAML file")


def test_unknown_key_names_it_and_the_allowed_keys(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "model.n_layers=2"], "model.n_layers", "did you mean model.n_layer", "allowed keys")


def test_wrong_type(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "generations=three"], "generations", "expected int")


def test_negative_size(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "train.tokens=-100"], "train.tokens=-100", ">= 1")


def test_bad_choice_lists_the_choices(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "mix.regime=mixed"], "mix.regime", "replace, accumulate, anchor")


def test_missing_data_file(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", f"data.path={tmp_path / 'gone.txt'}"],
          "data.path=", "gone.txt", "file not found")
    (tmp_path / "corpus").mkdir()
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", f"data.path={tmp_path / 'corpus'}"],
          f"data.path={tmp_path / 'corpus'}: a folder", ".txt, .jsonl, .json or .parquet")


def test_empty_corpus(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", corpus(tmp_path, b"\n \n\n")], "corpus is empty")


def test_corpus_smaller_than_a_block(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", corpus(tmp_path, b"a cat\na dog\nthe end\n"),
                             "data.heldout_docs=1"], "fewer than one block of model.context=64")


def test_non_utf8_bytes(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", corpus(tmp_path, b"fine\ncaf\xe9\n")],
          "not UTF-8", "offset 8")


def test_unreachable_hub(capsys, tmp_path, config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    fails(capsys, tmp_path, ["run", str(config), "data.source=hub", "data.name=roneneldan/TinyStories"],
          "data.name=roneneldan/TinyStories", "could not be reached", "data.source=storyworld", "data.source=local")


def test_held_out_larger_than_corpus(capsys, tmp_path, config):
    fails(capsys, tmp_path, ["run", str(config), "data.source=local", corpus(tmp_path, b"a\nb\nc\n"),
                             "data.heldout_docs=5"], "data.heldout_docs=5")


def test_the_installed_command_exits_non_zero_with_one_line(tmp_path, config):
    done = subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(config), "sample.top_p=1.5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: sample.top_p=1.5 must be in (0, 1] (1 turns it off)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, needle", [
    ([], "testbed: the following arguments are required: command; see testbed -h"),
    (["run"], "testbed run: the following arguments are required: config; see testbed run -h"),
    (["lab", "run", "collapse", "--size", "big"], "testbed lab run: argument --size: invalid choice: 'big'"),
    (["sweep", "c.yaml", "--jobs", "two"], "testbed sweep: argument --jobs: invalid int value: 'two'"),
    (["run", "c.yaml", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_malformed_command_line_is_one_line_too(capsys, argv, needle):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err


def test_the_libraries_retry_lines_are_not_testbeds_output():
    """Offline without HF_HUB_OFFLINE, huggingface_hub logged ten "Retrying in Ns" lines before testbed's error."""
    import logging

    from testbed import quiet_libraries

    quiet_libraries()
    assert not logging.getLogger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("datasets").isEnabledFor(logging.ERROR)
