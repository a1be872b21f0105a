"""Fault injection, one test per class of failure in issue 14: each ends in a non-zero exit and one line naming the
file or key, never a traceback; no user file is removed, nothing unfinished is marked done, and the corrected or
repeated command then succeeds."""
import errno
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.cli import main

pytestmark = pytest.mark.e2e

# A whole generation in a few seconds on the built-in corpus.
TINY = ["data.source=storyworld", "data.docs=200", "data.heldout_docs=20", "tokenizer.vocab_size=300",
        "model.preset=nano", "model.context=32", "train.tokens=2000", "train.batch_size=8", "sample.size=10",
        "sample.batch_size=10", "eval.sample_words=200", "eval.truth_docs=10", "eval.confidence_docs=10",
        "eval.self_bleu_pairs=10", "mix.keep_unfinished=true"]


def cli(capsys, *argv):
    """(exit status, stdout, stderr) of `testbed ARGV`, run in this process."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, *argv, needles=(), code=2):
    """The command exits with `code` and one line on stderr, `error: ...` holding every needle; returns the line."""
    got, _, err = cli(capsys, *argv)
    assert got == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tree(folder: Path) -> dict:
    """Every file under folder with its bytes: what "no user file removed or changed" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "c.yaml"
    path.write_text("seed: 0\n")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, config):
    """A finished run of generations 0 and 1; tests that change it work on a copy."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", str(config), f"run_dir={run_dir}", "generations=1", *TINY]) == 0
    return run_dir


def copy_of(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def run_argv(config, run_dir, *extra):
    return ["run", config, f"run_dir={run_dir}", "generations=1", *TINY, *extra]


# 1. compare --out never removes a user's folder ------------------------------------------------------------------

def test_compare_out_refuses_a_users_folder_and_keeps_every_file(finished, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "report.json").write_text('{"quarterly": 1}')
    (mine / "data" / "x.csv").write_text("1,2\n")
    before = tree(mine)
    fails(capsys, "compare", finished, "--out", mine, needles=(f"--out {mine}", "choose a new folder"))
    assert tree(mine) == before and (mine / "data").is_dir()
    code, out, _ = cli(capsys, "compare", finished, "--out", mine)
    assert code == 2 and out == ""  # refused before the table: one line, as docs/compare.md says
    assert cli(capsys, "compare", finished, "--out", tmp_path / "report")[0] == 0
    assert (tmp_path / "report" / "index.html").exists()


# 2. a damaged generation is named, never used ------------------------------------------------------------------

def test_a_damaged_corpus_is_named_and_redoing_its_generation_repairs_the_run(finished, tmp_path, capsys, config):
    run_dir = copy_of(finished, tmp_path)
    corpus = run_dir / "gen_001" / "corpus.jsonl"
    corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:3]))  # cut to 3 of its 10 lines
    fix = f"delete {run_dir / 'gen_001'} to make generation 1 again"
    fails(capsys, "compare", run_dir, needles=("gen_001/corpus.jsonl: damaged", fix))
    fails(capsys, *run_argv(config, run_dir, "generations=2"), needles=("gen_001/corpus.jsonl: damaged", fix))
    assert not (run_dir / "gen_002").exists() and not list(run_dir.glob("*.partial"))
    first = run_dir / "gen_000" / "corpus.jsonl"
    intact = first.read_bytes()
    first.write_bytes(intact[: len(intact) // 2])  # cut mid-line
    fails(capsys, "compare", run_dir, needles=("gen_000/corpus.jsonl: damaged",))
    first.write_bytes(intact)
    shutil.rmtree(run_dir / "gen_001")  # as the line says
    assert cli(capsys, *run_argv(config, run_dir))[0] == 0
    assert cli(capsys, "compare", run_dir)[0] == 0


def test_damaged_model_bytes_are_named_by_eval_and_compare(finished, tmp_path, capsys):
    run_dir = copy_of(finished, tmp_path)
    weights = run_dir / "gen_001" / "model" / "model.safetensors"
    intact = weights.read_bytes()
    data = bytearray(intact)
    data[-64:] = bytes(64)  # the same size, other tensor bytes
    weights.write_bytes(bytes(data))
    text = run_dir / "gen_000" / "corpus.jsonl"
    fails(capsys, "eval", "--text", text, "--model", run_dir / "gen_001" / "model",
          needles=("gen_001/model/model.safetensors: damaged",))
    fails(capsys, "compare", run_dir, needles=("model.safetensors: damaged",))
    weights.write_bytes(intact)
    code, out, _ = cli(capsys, "eval", "--text", text, "--model", run_dir / "gen_001" / "model")
    assert code == 0 and json.loads(out)["ppl"] > 1


# 3. non-finite numbers and a diverging loss ----------------------------------------------------------------------

def test_an_infinite_config_number_is_refused(capsys, config, tmp_path):
    fails(capsys, *run_argv(config, tmp_path / "run", "train.lr=.inf"), needles=("train.lr=inf", "finite"))
    assert not (tmp_path / "run").exists()


# 5 (and 3). a new run that fails leaves nothing, whatever stopped it; the corrected command then runs -----------

def test_a_failed_new_run_leaves_nothing_and_the_corrected_command_runs(capsys, config, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    line = fails(capsys, *run_argv(config, run_dir, "generations=0", "train.lr=1e30"),
                 needles=("the loss became", "train.lr"))
    assert "step" in line and not run_dir.exists()

    import testbed.loop

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(testbed.loop, "save_model", full)
    fails(capsys, *run_argv(config, run_dir, "generations=0"), code=1,
          needles=("No space left on device", "free space", "run the same command again"))
    assert not run_dir.exists() and not list(tmp_path.glob(".*"))
    monkeypatch.undo()
    assert cli(capsys, *run_argv(config, run_dir, "generations=0"))[0] == 0
    assert json.loads((run_dir / "gen_000" / "DONE").read_text())


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. "
                                   "DefaultCPUAllocator: can't allocate memory: you tried to allocate 51539607552 bytes")])
def test_out_of_memory_is_one_line_from_python_or_from_torchs_allocator(capsys, config, tmp_path, monkeypatch, error):
    """torch's CPU allocator raises a RuntimeError, not MemoryError: model.n_embd=65536 printed 44 lines."""
    import testbed.loop

    def out(*args, **kwargs):
        raise error
    monkeypatch.setattr(testbed.loop, "build_model", out)
    run_dir = tmp_path / "run"
    fails(capsys, *run_argv(config, run_dir, "generations=0"), code=1, needles=("run: out of memory; lower the sizes",))
    assert not run_dir.exists()
    monkeypatch.setattr(testbed.loop, "build_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # any other error is a bug to see whole
        main([str(a) for a in run_argv(config, run_dir, "generations=0")])


def test_over_the_file_size_limit_is_one_line_and_leaves_no_run(capsys, tmp_path, config):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, hard))  # Python ignores SIGXFSZ: a write gets EFBIG
    try:
        # The model's weights are the first file over 30 kB.
        line = fails(capsys, *run_argv(config, tmp_path / "run", "generations=0"), code=1, needles=("ulimit -f",))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "File too large" in line
    assert not (tmp_path / "run").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# 4. the bookkeeping is rebuilt from the generations ----------------------------------------------------------------

def test_a_lost_metrics_line_and_a_lost_done_marker_are_made_again(finished, tmp_path, capsys, config):
    run_dir = copy_of(finished, tmp_path)
    rows = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text(rows.splitlines(keepends=True)[0])
    code, out, _ = cli(capsys, *run_argv(config, run_dir))
    assert code == 0 and "generations 0 to 1 are all finished" in out
    assert (run_dir / "metrics.jsonl").read_text() == rows
    (run_dir / "gen_001" / "DONE").unlink()  # not finished, whatever it holds: made again
    code, out, _ = cli(capsys, *run_argv(config, run_dir))
    assert code == 0 and "gen 1/1 · train" in out and "resuming after generation 0" in out
    assert (run_dir / "gen_001" / "DONE").exists() and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", ["split.json", "tokenizer/tokenizer.json"])
def test_a_damaged_run_file_outside_the_generations_is_named_in_one_line(finished, tmp_path, capsys, config, name):
    run_dir = copy_of(finished, tmp_path)
    whole = (run_dir / name).read_text()
    (run_dir / name).write_text(whole[: len(whole) // 2])  # cut short
    line = fails(capsys, *run_argv(config, run_dir, "generations=2"), needles=[str(run_dir / name.split("/")[0])])
    assert "restore it from a copy" in line
    assert not (run_dir / "gen_002").exists() and not (run_dir / "gen_002.partial").exists()


def test_a_run_whose_tokenizer_folder_is_gone_is_named_without_asking_the_hub(finished, tmp_path, capsys, config,
                                                                             monkeypatch):
    """from_pretrained reads a path that does not exist as the name of a Hub repository: online, a request."""
    from transformers import PreTrainedTokenizerFast

    run_dir = copy_of(finished, tmp_path)
    shutil.rmtree(run_dir / "tokenizer")
    monkeypatch.setattr(PreTrainedTokenizerFast, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("asked from_pretrained (and so the Hub)")))
    line = fails(capsys, *run_argv(config, run_dir, "generations=2"),
                 needles=[f"{run_dir / 'tokenizer'}: no tokenizer folder there", "restore it from a copy"])
    assert "Hub" not in line and not (run_dir / "gen_002.partial").exists()


def test_a_generation_gone_from_the_middle_is_not_made_again_under_later_ones(finished, tmp_path, capsys, config):
    """gen_001 was made from what gen_000 wrote: remaking gen_000 alone would leave gen_001 made from other text."""
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "gen_000" / "DONE").unlink()
    before = sorted(p.name for p in run_dir.iterdir())
    fails(capsys, *run_argv(config, run_dir), needles=(f"{run_dir / 'gen_000'} is not finished, but gen_001 is",
                                                       "delete gen_001 and run again"))
    assert sorted(p.name for p in run_dir.iterdir()) == before


# 6. the same run under another spelling ----------------------------------------------------------------------------

def test_the_same_run_under_another_spelling_resumes(finished, tmp_path, capsys, config, monkeypatch):
    moved = copy_of(finished, tmp_path)
    monkeypatch.chdir(tmp_path)
    for spelling in ("run/", "./run", str(tmp_path / "." / "run")):
        code, out, err = cli(capsys, *run_argv(config, spelling))
        assert code == 0 and "generations 0 to 1 are all finished" in out, err
    assert len((moved / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_run_begun_before_the_word_tokenizer_fix_is_not_continued_but_still_reads(tmp_path, capsys, config):
    """Its tokenizer reads a written <|unk|> as three unknowns: continued, the run would silently measure that
    artifact again. Finished, it only reports what it measured."""
    from tokenizers import pre_tokenizers

    from testbed.tokenizer import load_tokenizer
    run_dir = tmp_path / "run"
    argv = ["run", config, f"run_dir={run_dir}", *TINY, "tokenizer.kind=word"]
    assert main([str(a) for a in argv] + ["generations=0"]) == 0
    old = load_tokenizer(run_dir / "tokenizer")
    old.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # as saved before the fix
    old.save_pretrained(run_dir / "tokenizer")
    capsys.readouterr()
    before = tree(run_dir)
    fails(capsys, *argv, "generations=1", needles=(f"{run_dir / 'tokenizer'}: a word tokenizer saved before the fix",
                                                   "start this run again in a new run_dir"))
    assert tree(run_dir) == before
    code, out, err = cli(capsys, *argv, "generations=0")
    assert code == 0 and "finished" in out, err


# 7. errors from the OS, a parser or a library: one line ----------------------------------------------------------

@pytest.mark.parametrize("override,needles", [
    ("generations=[1", ("generations=[1", "line 1, column 3")),
    ("train.lr={a", ("train.lr={a", "not a valid value")),
    ("model.n_layer=@x", ("model.n_layer=@x", "cannot start any token")),
])
def test_an_override_that_is_not_yaml(capsys, config, tmp_path, override, needles):
    fails(capsys, *run_argv(config, tmp_path / "run", override), needles=needles)
    assert not (tmp_path / "run").exists()


def test_config_files_that_are_not_utf8_or_not_yaml(capsys, tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 0\nrun_dir: caf\xe9\n")
    fails(capsys, "run", latin, needles=(str(latin), "not UTF-8", "offset 20"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  preset: nano\n   context: 4\n")
    fails(capsys, "run", broken, needles=(str(broken), "not valid YAML", "line 3, column 11"))
    twice = tmp_path / "twice.yaml"  # YAML itself would keep the last one silently
    twice.write_text("generations: 1\nmodel:\n  preset: nano\n  preset: tiny\ngenerations: 5\n")
    fails(capsys, "run", twice, needles=(str(twice), "not valid YAML", "the key 'generations' is given twice at line 5, column 1"))
    twice.write_text("generations: 1\nmodel:\n  preset: nano\n  preset: tiny\n")
    fails(capsys, "run", twice, needles=("the key 'preset' is given twice at line 4, column 3",))


def test_a_run_dir_under_a_file_is_refused_before_any_work(capsys, config, tmp_path):
    (tmp_path / "afile").write_text("mine")
    fails(capsys, *run_argv(config, tmp_path / "afile" / "run"), needles=("run_dir=", "afile is a file"))
    assert (tmp_path / "afile").read_text() == "mine"
    fails(capsys, "compare", tmp_path / "afile", needles=("afile", "not a testbed run directory"))


def test_an_unwritable_folder_is_one_line(capsys, config, tmp_path, monkeypatch, finished):
    import tempfile

    real = tempfile.mkdtemp

    def refused(*args, dir=None, **kwargs):
        if str(dir).startswith(str(tmp_path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkdtemp", refused)  # root may write anywhere: chmod alone proves nothing
    fails(capsys, *run_argv(config, tmp_path / "run", "generations=0"), code=1,
          needles=(str(tmp_path), "Permission denied", "choose a folder you can write to"))
    assert not (tmp_path / "run").exists()
    fails(capsys, "compare", finished, "--out", tmp_path / "report", code=1, needles=("Permission denied",))
    assert not (tmp_path / "report").exists()


def test_eval_is_given_a_missing_model_a_weights_file_or_bad_text(capsys, tmp_path, finished):
    text = finished / "gen_000" / "corpus.jsonl"
    fails(capsys, "eval", "--text", text, "--model", tmp_path / "nope", needles=("--model", "nope", "not found"))
    weights = finished / "gen_001" / "model" / "model.safetensors"
    fails(capsys, "eval", "--text", text, "--model", weights, needles=("a file", str(weights.parent)))
    fails(capsys, "eval", "--text", text, "--model", finished, needles=("no config.json",))
    fails(capsys, "eval", "--text", text, "--model", finished / "tokenizer", "--tokenizer", finished / "tokenizer",
          needles=("no config.json",))
    # A tokenizer other than the model's: refused, where it used to give a perplexity of nothing or an IndexError.
    from testbed.tokenizer import train_tokenizer
    train_tokenizer(["a b c d e f g"] * 3, 40, "word").save_pretrained(tmp_path / "other")
    fails(capsys, "eval", "--text", text, "--model", finished / "gen_000" / "model", "--tokenizer", tmp_path / "other",
          needles=("--tokenizer", "but the model at", "give the tokenizer it was trained with"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    fails(capsys, "eval", "--text", text, "--tokenizer", finished / "tokenizer", "--human", tmp_path / "blank.txt",
          needles=("--human", "no documents"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"fine\ncaf\xe9\n")
    fails(capsys, "eval", "--text", latin, needles=(str(latin), "not UTF-8", "offset 8"))
    fails(capsys, "eval", "--text", text, "--human", latin, needles=(str(latin), "not UTF-8"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a cat"}\n{"text": 5}\n')
    fails(capsys, "eval", "--text", rows, needles=(str(rows), "line 2", "found int"))
    code, out, _ = cli(capsys, "eval", "--text", text, "--model", finished / "gen_001" / "model")
    assert code == 0 and json.loads(out)["documents"] == 10


@pytest.mark.parametrize("lines,needles", [
    (['{"text": null}'], ("line 4: data.text_field=text: expected text, found null",)),
    (['{"text": 7}'], ("line 4: data.text_field=text: expected text, found int",)),
    (['{"text": "broken'], ("line 4", "not valid JSON")),
    (['[1, 2]'], ("line 4", "array")),
    (['{"body": "x"}'], ("line 4", "no 'text' field", "data.text_field")),
])
def test_a_bad_jsonl_line_is_named_by_its_number(capsys, config, tmp_path, lines, needles):
    good = [json.dumps({"text": f"the cat number {i} sat on the mat."}) for i in range(30)]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(good[:3] + lines + good[3:]) + "\n")
    fails(capsys, *run_argv(config, tmp_path / "run", "data.source=local", f"data.path={path}"),
          needles=(f"data.path={path}", *needles))
    assert not (tmp_path / "run").exists()


def test_an_empty_jsonl_file_is_said_to_be_empty(capsys, config, tmp_path):
    (tmp_path / "c.jsonl").write_text("\n  \n")
    fails(capsys, *run_argv(config, tmp_path / "run", "data.source=local", f"data.path={tmp_path / 'c.jsonl'}"),
          needles=(f"{tmp_path / 'c.jsonl'}: the corpus is empty (no rows)",))


def test_a_first_jsonl_row_without_the_text_field_is_said_to_have_none(capsys, config, tmp_path):
    """pyarrow fills the field the first row lacks with null: "holds NoneType" used to say something else."""
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 1}\n' + "".join(json.dumps({"text": f"the cat number {i} sat."}) + "\n" for i in range(30)))
    fails(capsys, *run_argv(config, tmp_path / "run", "data.source=local", f"data.path={path}"),
          needles=(f"row 1 of {path} has no text (the field is null or missing)",))


# 8. clear lines: SIGTERM, absurd sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("override,key", [
    ("generations=1000000000", "generations=1000000000"), ("data.docs=1000000000000", "data.docs="),
    ("model.n_embd=10000000", "model.n_embd="), ("sample.size=100000000000", "sample.size="),
    ("train.tokens=1000000000000000", "train.tokens="),
])
def test_absurd_sizes_fail_at_validation(capsys, config, tmp_path, override, key):
    start = time.perf_counter()
    fails(capsys, *run_argv(config, tmp_path / "run", override), needles=(key, "too large", "at most"))
    assert time.perf_counter() - start < 5 and not (tmp_path / "run").exists()


def test_sigterm_says_so_keeps_finished_generations_and_resumes(finished, tmp_path, capsys, config, monkeypatch):
    import testbed.loop

    run_dir = copy_of(finished, tmp_path)
    shutil.rmtree(run_dir / "gen_001")
    real = testbed.loop.train

    def train(*args, **kwargs):
        if kwargs.get("desc", "").startswith("gen 1/"):  # terminated in the middle of generation 1
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(testbed.loop, "train", train)
    code, _, err = cli(capsys, *run_argv(config, run_dir))
    assert code == 128 + signal.SIGTERM and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"terminated: generation 0 finished and kept in {run_dir}; run the same command again to resume"]
    assert (run_dir / "gen_000" / "DONE").exists() and not (run_dir / "gen_001").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # main() gives the handler back
    monkeypatch.undo()
    code, out, _ = cli(capsys, *run_argv(config, run_dir))
    assert code == 0 and "resuming after generation 0" in out and (run_dir / "gen_001" / "DONE").exists()


def test_ctrl_c_in_generation_0_of_a_new_run_says_nothing_was_kept(tmp_path, capsys, config, monkeypatch):
    """The folder of a new run stopped before generation 0 finished is removed: the message must not promise
    finished generations that do not exist."""
    import testbed.loop

    def train(*args, **kwargs):
        raise KeyboardInterrupt()
    monkeypatch.setattr(testbed.loop, "train", train)
    code, _, err = cli(capsys, *run_argv(config, tmp_path / "run"))
    assert code == 130 and not (tmp_path / "run").exists()
    assert err.strip().splitlines() == [
        "interrupted: no generation had finished, so there is nothing to resume; run the same command again to start over"]


def test_ctrl_c_while_a_resumed_run_imports_says_what_it_keeps(finished, tmp_path, capsys, config, monkeypatch):
    """Importing the loop takes seconds; a Ctrl-C there said "no generation had finished" of a run with two."""
    import sys

    class Interrupt:
        def find_spec(self, name, path=None, target=None):
            if name == "testbed.loop":
                raise KeyboardInterrupt()
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    monkeypatch.delitem(sys.modules, "testbed.loop")
    monkeypatch.setattr(sys, "meta_path", [Interrupt(), *sys.meta_path])
    code, _, err = cli(capsys, *run_argv(config, run_dir))
    assert code == 130 and err.strip() == (f"interrupted: generations 0-1 finished and kept in {run_dir}; run the same "
                                           "command again to resume")
    import testbed.config
    monkeypatch.setattr(testbed.config, "load_config", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = cli(capsys, *run_argv(config, run_dir))
    assert code == 130 and "stopped before the run was read; anything it had finished is kept" in err
    import testbed.report.compare
    monkeypatch.setattr(testbed.report.compare, "load_runs", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = cli(capsys, "compare", run_dir)
    assert code == 130 and "a report is put in place whole or not at all" in err  # it resumes nothing


def test_a_new_run_killed_before_generation_0_finished_names_the_fix_for_a_corrected_config(finished, tmp_path, capsys,
                                                                                            config):
    """kill -9 (the out-of-memory killer) leaves a new run's folder with nothing finished; lowering the sizes, as the
    user then does, was refused as 'a different config ... use a new run_dir' with no word of why."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    for g in run_dir.glob("gen_*"):
        shutil.rmtree(g)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    fails(capsys, *run_argv(config, run_dir, "train.batch_size=4"),
          needles=("changed: train.batch_size) that never finished a generation", f"rm -r {run_dir}"))
    shutil.rmtree(run_dir)
    assert cli(capsys, *run_argv(config, run_dir, "train.batch_size=4"))[0] == 0


def test_a_sigterm_that_arrives_as_a_keyboardinterrupt_is_still_a_sigterm(tmp_path, capsys, config, monkeypatch):
    """ray.wait re-raises what our handler raises as a plain KeyboardInterrupt: `sweep --jobs 2` used to say
    "interrupted" and exit 130 for a SIGTERM."""
    import testbed.loop

    def run(cfg, say=print):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            raise KeyboardInterrupt() from None
    monkeypatch.setattr(testbed.loop, "run", run)
    code, _, err = cli(capsys, *run_argv(config, tmp_path / "run"))
    assert code == 128 + signal.SIGTERM
    assert err.strip().splitlines() == [
        "terminated: no generation had finished, so there is nothing to resume; run the same command again to start over"]
    monkeypatch.setattr(testbed.loop, "run", lambda cfg, say=print: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = cli(capsys, *run_argv(config, tmp_path / "run"))  # a Ctrl-C after it is a Ctrl-C again
    assert code == 130 and err.startswith("interrupted:")


# 9. a pathological document ----------------------------------------------------------------------------------------

def test_a_huge_line_without_spaces_costs_seconds_not_minutes(capsys, tmp_path):
    from testbed.corpus.storyworld import StoryWorld
    from testbed.tokenizer import encode, train_tokenizer

    stories = StoryWorld().sample(200, 0)
    junk = "".join(chr(97 + (i * 7919) % 26) for i in range(300_000))  # before the fix: about a minute
    docs = stories[:100] + [junk] + stories[100:]
    start = time.perf_counter()
    tok = train_tokenizer(docs, 300)
    ids = encode(tok, docs)
    assert time.perf_counter() - start < 20
    assert tok.decode(ids[100]) == junk and [tok.decode(i) for i in ids[:3]] == stories[:3]
    err = capsys.readouterr().err
    assert "note: 1 document(s) hold a run of more than 1,000 characters without whitespace" in err
    # Ordinary documents are untouched: the same tokenizer as without the pathological one would give them.
    assert encode(tok, stories[:5]) == tok(stories[:5], add_special_tokens=False)["input_ids"]
    # A run passes its own say, so the note reaches the run's lines (prefixed by run under Ray), not bare stderr.
    said = []
    train_tokenizer(stories[:50] + ["x" * 2000], 300, say=said.append)
    assert said[0].startswith("note: 1 document(s)") and "without whitespace" not in capsys.readouterr().err


def test_a_ctrl_c_while_torch_imports_arrives_after_it(tmp_path):
    """torch's C++ import code aborted the process on a KeyboardInterrupt (SIGABRT, exit 134, no line): the
    command imports it with SIGINT held. A stand-in torch sends itself the Ctrl-C halfway through its import."""
    import subprocess
    import sys

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.3)\n"
                                      "WHOLE = True\n")
    # A background job (CI's) hands its children SIGINT ignored: the stand-in's Ctrl-C would then do nothing.
    # numpy first: its BLAS threads, started at its import, took a signal the main thread held (CI failed so).
    code = ("import signal, sys\nimport numpy\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from testbed.cli import _import_torch\n"
            "try:\n    _import_torch()\nexcept KeyboardInterrupt:\n"
            "    print('interrupted after the import' if sys.modules['torch'].WHOLE else 'during it')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])})
    assert done.stdout.strip() == "interrupted after the import", done.stderr


def test_an_os_error_on_a_half_written_file_names_the_place_the_user_gave():
    """A read-only --out printed '/x/.rep.y4s6o3eb.tmp: Read-only file system', a name the user never chose."""
    from testbed.rundir import os_failure

    assert os_failure(OSError(errno.EROFS, "Read-only file system", "/x/.rep.y4s6o3eb.tmp")).startswith(
        "/x/rep: Read-only file system; a read-only file system: choose a folder on a writable disk")
    assert os_failure(OSError(errno.ENOSPC, "No space left on device", "/x/.report.ab12_cd34.tmp/index.html")).startswith(
        "/x/report/index.html: No space left on device; the disk is full")
    assert os_failure(OSError(errno.ENOSPC, "No space", "/x/run/gen_000.partial/model")).startswith(
        "/x/run/gen_000.partial/model: ")  # not a temporary name: as the OS gave it


def test_a_run_dir_under_a_folder_it_cannot_write_is_refused_before_the_work(tmp_path, monkeypatch):
    """It failed after the corpus and the tokenizer, on a read-only disk or folder."""
    from testbed.rundir import check_can_hold

    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(TestbedError, match=rf"^run_dir={re.escape(str(tmp_path / 'new'))}: {re.escape(str(tmp_path))} "
                                           r"cannot be written to, so the run's folder cannot be made there; "):
        check_can_hold(str(tmp_path / "new"))
    (tmp_path / "old").mkdir()
    check_can_hold(str(tmp_path / "old"))  # an existing run's folder: its own checks say what is wrong inside
