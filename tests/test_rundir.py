import json
import os
import re
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.rundir import RunDir, create, read_json, read_jsonl, write_json, write_jsonl, write_text

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def test_write_text_replaces_the_file(tmp_path):
    path = tmp_path / "f.txt"
    write_text(path, "old")
    write_text(path, "new ünïcode")
    assert path.read_text(encoding="utf-8") == "new ünïcode"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_text_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_text_failure_while_writing(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_write_text_respects_the_umask(tmp_path):
    write_text(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask()


def test_json_and_jsonl_round_trip(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2.5, None], "é": "ü"})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2.5, None], "é": "ü"}
    rows = [{"text": "line\nbreak", "n": 1}, {"text": "ünï", "n": 2}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    assert read_jsonl(tmp_path / "a.jsonl") == rows
    assert len((tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    write_jsonl(tmp_path / "empty.jsonl", [])
    assert read_jsonl(tmp_path / "empty.jsonl") == []


def finished_gen(rd, g, metrics):
    part = rd.begin(g)
    write_json(part / "metrics.json", metrics)
    return rd.finish(g, part)


def test_begin_removes_leftovers_of_a_partial_generation(tmp_path):
    rd = RunDir(tmp_path)
    part = rd.begin(0)
    (part / "model").mkdir()
    (part / "model" / "half.bin").write_bytes(b"x")
    again = rd.begin(0)
    assert again == part and list(again.iterdir()) == []


def test_finish_renames_and_writes_done(tmp_path):
    rd = RunDir(tmp_path)
    gen = finished_gen(rd, 0, {"generation": 0})
    assert gen == tmp_path / "gen_000"
    assert (gen / "DONE").exists() and (gen / "metrics.json").exists()
    assert not (tmp_path / "gen_000.partial").exists()
    assert rd.finished(0) and not rd.finished(1)


def test_finished_generations_ignores_partial_and_undone(tmp_path):
    rd = RunDir(tmp_path)
    finished_gen(rd, 0, {"generation": 0})
    finished_gen(rd, 2, {"generation": 2})
    rd.begin(3)
    (tmp_path / "gen_003.partial" / "DONE").write_text("")  # not renamed yet: not finished
    (tmp_path / "gen_001").mkdir()  # no DONE
    (tmp_path / "gen_004.partial").mkdir()
    assert rd.finished_generations() == [0, 2]
    assert not rd.finished(1) and not rd.finished(3)
    assert rd.complete(0) and not rd.complete(2)  # generation 1 is missing
    finished_gen(rd, 1, {"generation": 1})
    assert rd.complete(2) and not rd.complete(3)


def test_finished_generations_sorts_numerically(tmp_path):
    rd = RunDir(tmp_path)
    for g in (10, 2, 100):
        finished_gen(rd, g, {"generation": g})
    assert rd.finished_generations() == [2, 10, 100]


def test_rebuild_metrics_from_finished_generations(tmp_path):
    rd = RunDir(tmp_path)
    finished_gen(rd, 1, {"generation": 1, "ppl": 2.0})
    finished_gen(rd, 0, {"generation": 0, "ppl": 1.0})
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"generation": 0, "ppl": 1.0}, {"generation": 1, "ppl": 2.0}]
    # a partial generation with metrics is not a row
    write_json(rd.begin(2) / "metrics.json", {"generation": 2})
    (tmp_path / "metrics.jsonl").unlink()
    rd.rebuild_metrics()
    assert [r["generation"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1]


def test_lock_refuses_a_second_lock(tmp_path):
    first = RunDir(tmp_path)
    first.lock()
    with pytest.raises(TestbedError, match=r"run_dir=.*in use"):
        RunDir(tmp_path).lock()
    first.unlock()  # releasing the first frees the directory
    RunDir(tmp_path).lock()


def test_create_makes_the_directory_whole(tmp_path):
    root = tmp_path / "runs" / "r"

    def fill(d):
        d.mkdir()
        (d / "tok.json").write_text("{}")

    create(root, {"config.yaml": "seed: 0\n", "split.json": json.dumps({"a": 1})}, {"tokenizer": fill})
    assert sorted(p.name for p in root.iterdir()) == ["config.yaml", "split.json", "tokenizer"]
    assert (root / "tokenizer" / "tok.json").read_text() == "{}"
    assert os.listdir(root.parent) == ["r"]


def test_create_respects_the_umask(tmp_path):
    create(tmp_path / "r", {"config.yaml": "seed: 0\n"}, {})
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o777 & ~umask()


def test_create_leaves_nothing_when_a_fill_fails(tmp_path):
    root = tmp_path / "r"

    def fill(d):
        d.mkdir()
        (d / "half").write_text("x")
        raise RuntimeError("tokenizer failed")

    with pytest.raises(RuntimeError, match="tokenizer failed"):
        create(root, {"config.yaml": "seed: 0\n"}, {"tokenizer": fill})
    assert os.listdir(tmp_path) == []


def test_a_folder_another_run_made_first_is_in_use_not_a_disk_error(tmp_path):
    """Two `testbed run`s started together on one new run_dir: the second's rename failed, and it printed
    "<its temporary folder>: Directory not empty; check the path, the disk and the permissions"."""
    root = tmp_path / "r"

    def other_run_makes_it_meanwhile(d):
        d.mkdir()
        create(root, {"config.yaml": "seed: 1\n"}, {})

    with pytest.raises(TestbedError, match=rf"^run_dir={re.escape(str(root))} is in use by another testbed run, started "
                                           r"at the same time, which made it first; wait for it or choose another run_dir$"):
        create(root, {"config.yaml": "seed: 0\n"}, {"tokenizer": other_run_makes_it_meanwhile})
    assert os.listdir(tmp_path) == ["r"] and (root / "config.yaml").read_text() == "seed: 1\n"


def test_begin_removes_a_generation_folder_without_its_marker(tmp_path):
    rd = RunDir(tmp_path)
    (tmp_path / "gen_001" / "model").mkdir(parents=True)  # DONE lost, or never written
    part = rd.begin(1)
    assert not (tmp_path / "gen_001").exists() and part.is_dir()
    (part / "metrics.json").write_text('{"generation": 1}')
    rd.finish(1, part)
    assert rd.finished(1)
    (tmp_path / "gen_002").mkdir()
    (tmp_path / "gen_002" / "DONE").write_text("")
    rd.begin(2)  # a finished generation is never removed
    assert rd.finished(2)


def test_extending_a_run_saves_its_new_generations_and_keeps_the_rest_of_its_first_config(tmp_path):
    """track and the spelling of run_dir are not the run's identity: config.yaml keeps the first values
    (docs/tracking.md), also when a longer rerun records its generations."""
    from dataclasses import replace

    from testbed.config import load_config, to_yaml

    first = replace(load_config(QUICKSTART), run_dir=str(tmp_path / "run"), generations=2, track=[])
    (tmp_path / "run").mkdir()
    write_text(tmp_path / "run" / "config.yaml", to_yaml(first))
    rundir = RunDir(tmp_path / "run")
    rundir.record_generations(replace(first, generations=5, track=["tensorboard"], run_dir="elsewhere/../run"))
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert (saved.generations, saved.track, saved.run_dir) == (5, [], first.run_dir)
    rundir.record_generations(replace(first, generations=3))  # a shorter rerun keeps every generation
    assert load_config(tmp_path / "run" / "config.yaml").generations == 5


def test_a_folder_locked_by_another_process_is_refused_and_free_once_that_process_is_killed(tmp_path):
    """The lock is the OS's, not a file's presence: a run killed with SIGKILL (no cleanup at all) leaves its
    folder free for the command that resumes it."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from testbed.rundir import RunDir; run = RunDir(sys.argv[1]); run.lock(); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TestbedError, match=r"run_dir=.*in use by another testbed run"):
            RunDir(tmp_path).lock()
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".lock").exists()  # left behind by the kill, and no obstacle
    RunDir(tmp_path).lock()


def test_a_damaged_generation_is_made_again_with_every_generation_made_after_it(tmp_path):
    """The fix a damaged generation names: the later generations trained on what it wrote, so they go too."""
    for g in range(6):
        (tmp_path / f"gen_{g:03d}").mkdir()
        (tmp_path / f"gen_{g:03d}" / "DONE").write_text("{}" if g != 1 and g != 4 else "damaged")
    with pytest.raises(TestbedError, match=r"gen_004/DONE: the marker is damaged; delete .*gen_004 and the generations "
                                           r"made after it \(gen_005\) to make them again from generation 4$"):
        RunDir(tmp_path).verify(4)
    with pytest.raises(TestbedError, match=r"delete .*gen_001 and the generations made after it \(gen_002 to gen_005\)"):
        RunDir(tmp_path).verify(1)
    (tmp_path / "gen_005" / "DONE").write_text("damaged")
    with pytest.raises(TestbedError, match=r"delete .*gen_005 to make generation 5 again$"):
        RunDir(tmp_path).verify(5)


def test_a_numpy_number_in_a_record_is_written_as_the_number_and_anything_else_is_named(tmp_path):
    # A metric function returning np.float32 stopped the run at reference.json with "not JSON serializable".
    import numpy as np

    from testbed.rundir import read_jsonl, write_json, write_jsonl

    write_json(tmp_path / "m.json", {"mean_story_words": np.float32(0.5), "docs": np.int64(3)})
    write_jsonl(tmp_path / "m.jsonl", [{"g": np.int32(0), "v": [np.float64(1.5)]}])
    assert json.loads((tmp_path / "m.json").read_text()) == {"mean_story_words": 0.5, "docs": 3}
    assert read_jsonl(tmp_path / "m.jsonl") == [{"g": 0, "v": [1.5]}]
    with pytest.raises(TypeError, match=r"set \{1\} is not JSON: a metric or record must hold numbers"):
        write_json(tmp_path / "bad.json", {"x": {1}})
    assert not (tmp_path / "bad.json").exists()
