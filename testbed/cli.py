"""testbed's one command line: `testbed run CONFIG [key=value ...]`, `testbed sweep`, `testbed compare RUN_DIR...`,
`testbed eval`, `testbed lab`."""
import argparse
import io
import os
import re
import signal
import sys
import threading
from pathlib import Path

from testbed import TestbedError, quiet_libraries
from testbed.rundir import check_can_hold, os_failure


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line as testbed's others are (the usage is one -h away)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} -h\n")


def _import_torch() -> None:
    """torch's C++ import code cannot take a KeyboardInterrupt: a Ctrl-C in a command's first seconds aborted the
    process (SIGABRT, no message, exit 134). During the import a Ctrl-C is only noted, and raised after it, so the
    command says what it stopped. (Noted by a handler, not held by a signal mask: numpy's BLAS threads, already
    running, would take a held signal and raise it in the import all the same.)"""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        import torch  # noqa: F401
        return
    noted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="testbed", description="Measure model collapse across generations of tiny GPTs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train generation 0, then each generation on the previous one's samples")
    run.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    run.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="e.g. generations=5 model.n_layer=2 run_dir=/tmp/x")
    compare = commands.add_parser("compare", help="each run's last generation against its generation 0: a table, or with --out a report")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--metrics", help="comma-separated metrics.jsonl keys, nested ones dotted as in metrics.csv "
                         "(recall_by_band.rare; default: the headline metrics)")
    compare.add_argument("--out", metavar="DIR", help="write an HTML report with PNG plots, metrics.csv and report.json to DIR")
    compare.add_argument("--samples", type=int, help="documents of sample text per generation shown in the report "
                         "(default 4; with --out)")
    sw = commands.add_parser("sweep", help="a grid of runs over config values and seeds (N at once with --jobs N), then a report")
    sw.add_argument("config", help="YAML config; the runs go in folders under its run_dir")
    sw.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="applied to every run, e.g. generations=5 run_dir=runs/regimes")
    sw.add_argument("--set", action="append", default=[], metavar="key=v1,v2", help="values to sweep; repeat for a grid")
    sw.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: the config's seed)")
    ev = commands.add_parser("eval", help="the metrics suite on one text file (and, with --model, one model)")
    ev.add_argument("--text", required=True, help="documents: a .jsonl with a text field (corpus.jsonl), else one a line")
    ev.add_argument("--model", help="a saved model directory, e.g. runs/quickstart/gen_002/model: adds perplexity")
    ev.add_argument("--human", help="human training text (same formats): defines rare words and frequency bands")
    ev.add_argument("--tokenizer", help="default: the run's tokenizer when --model lies in a run directory")
    ev.add_argument("--seed", type=int, help="seed of the fixed-size samples (default: the run's when --model lies in "
                                            "a run, so its own corpus scores as in its metrics.json; else 0)")
    ev.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="e.g. eval.sample_words=100000 data.source=storyworld")
    lab = commands.add_parser("lab", help="teaching labs: one question each, its runs over seeds, and a verdict")
    labs = lab.add_subparsers(dest="lab_command", required=True)
    labs.add_parser("list", help="each lab's name, stated time and question")
    lab_run = labs.add_parser("run", help="run every arm x seed of a lab (resumable), then the report and the verdict")
    lab_run.add_argument("name", help="a lab from `testbed lab list`, or the path of a lab YAML file")
    lab_run.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1 (default: the lab's)")
    lab_run.add_argument("--arms", help="comma-separated arms to run, e.g. verified,unverified (default: all); "
                         "the checks that read another arm are not run")
    lab_run.add_argument("--out", metavar="DIR", help="the lab's folder (default: runs/labs/NAME, or NAME-SIZE)")
    lab_run.add_argument("--size", choices=["default", "reduced", "gpu"], default="default",
                         help="reduced: seconds a run, checks the pipeline only; gpu: a bigger model for one GPU")
    lab_run.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                         help="laid over every arm, e.g. model.preset=nano (a smaller model, for a CPU without "
                              "native bf16) or model.family=llama")
    for p in (sw, lab_run):
        p.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="runs at once, on Ray (pip install -e \".[ray]\"); default 1: one after the other, in this process")
        p.add_argument("--threads", type=int, metavar="N",
                       help="torch threads per run (default: cores // jobs with --jobs; torch's own with --jobs 1); "
                            "the same N gives the same metrics whatever --jobs")
        p.add_argument("--address", metavar="HOST:PORT",
                       help="run on this existing Ray cluster (or auto) instead of a local one")
    # key=value overrides may come before or after options such as --set; argparse alone stops at the first option.
    args, rest = parser.parse_known_args(argv)
    if rest and (not hasattr(args, "overrides") or any(r.startswith("-") for r in rest)):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.overrides += rest

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    previous = _catch_sigterm()
    run_dir = None  # known once `testbed run` has read its config
    # Under accelerate launch every process runs this; the user reads one line, the main process's.
    err = sys.stderr if os.environ.get("RANK", "0") == "0" else io.StringIO()
    try:
        if args.command in ("run", "sweep", "eval") or getattr(args, "lab_command", None) == "run":
            _import_torch()
        quiet_libraries()
        if args.command in ("sweep", "lab") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise TestbedError(f"testbed {args.command} runs several runs, each in one process (--jobs N, on Ray); "
                               "accelerate launch is for one testbed run: start this without it")
        if args.command == "compare":
            from testbed.report.compare import load_runs, table

            if args.samples is not None and args.samples < 0:
                raise TestbedError(f"--samples {args.samples} must be >= 0 (0 shows no sample text)")
            if args.samples is not None and not args.out:
                raise TestbedError(f"--samples {args.samples} sets the sample text of the HTML report; add --out DIR")
            metrics = None
            if args.metrics is not None:
                metrics = list(dict.fromkeys(m.strip() for m in args.metrics.split(",") if m.strip()))
                if not metrics:
                    raise TestbedError(f"--metrics {args.metrics!r} names no metric; give metrics.jsonl keys separated "
                                       "by commas, e.g. --metrics heldout_ppl,recall_by_band.rare")
            if args.out == "":
                raise TestbedError("--out is empty; give the report's folder, e.g. --out reports/regimes")
            runs = load_runs(args.runs)
            if args.out is not None and (out := Path(args.out).absolute()).exists():
                from testbed.report.page import check_replaceable

                check_replaceable(out)  # before the table: a refusal is one line
            print(table(runs, metrics))
            if args.out is not None:
                from testbed.report.page import build

                print(f"report: {build(runs, args.out, metrics, 4 if args.samples is None else args.samples)}")
            return 0
        if args.command == "sweep":
            from testbed.sweep import sweep

            report, failed = sweep(args.config, args.overrides, args.set, args.seeds, args.jobs, args.threads, args.address)
            if report:
                print(f"report: {report}")
            for name, error in failed.items():
                print(f"error: run {name} failed: {error}", file=sys.stderr)
            if failed:
                print(f"error: {len(failed)} run(s) failed, {'the others finished' if report else 'none finished'}; fix "
                      "the cause and run the same command again: finished runs are skipped", file=sys.stderr)
                return 1
            return 0
        if args.command == "lab":
            from testbed.labs import listing, load, render_text, run_lab
            from testbed.sweep import parse_seeds

            if args.lab_command == "list":
                text, broken = listing()
                print(text)
                for error in broken:
                    print(f"error: {error}", file=sys.stderr)
                return 2 if broken else 0
            verdict = run_lab(load(args.name), args.size, parse_seeds(args.seeds), args.out, jobs=args.jobs,
                              threads=args.threads, address=args.address, overrides=args.overrides,
                              arms=args.arms.split(",") if args.arms else None)
            print(render_text(verdict))
            report = f"; report: {verdict['report']}" if "report" in verdict else ""
            print(f"wrote {verdict['out']}/verdict.md and verdict.json{report}")
            failed = [name for name, why in verdict["missing"].items() if why.startswith("stopped:")]
            if failed:  # a rerun alone would stop them again
                print(f"error: lab {args.name}: {len(failed)} run(s) failed ({', '.join(failed)}; the reason is in each "
                      "one's line above and in verdict.md), so the checks that read them were not run; fix the cause "
                      "and run the same command again", file=sys.stderr)
                return 1
            if verdict["missing"]:
                print(f"error: lab {args.name}: runs missing or unfinished: {', '.join(verdict['missing'])}; their checks "
                      "were not run; run the same command again to resume", file=sys.stderr)
                return 1
            undecided = [u for c in verdict["checks"] for u in c["undefined"]]
            if undecided:
                print(f"error: lab {args.name}: {len(undecided)} figure(s) undefined, so their checks were not run: "
                      f"{undecided[0]}", file=sys.stderr)
                return 1
            return 0
        if args.command == "eval":
            import json

            from testbed.metrics.files import evaluate_file

            row = evaluate_file(args.text, args.model, args.human, args.tokenizer, args.overrides, args.seed,
                                say=lambda line: print(line, file=sys.stderr))
            print(json.dumps(row, indent=1))
            return 0
        from testbed.config import load_config

        cfg = load_config(args.config, args.overrides)
        run_dir = cfg.run_dir  # before the seconds of importing the loop: a Ctrl-C there knows what it stopped
        check_can_hold(cfg.run_dir)
        from testbed.loop import run as run_experiment

        run_experiment(cfg)
    except TestbedError as e:
        print(f"error: {e}", file=err)
        return 2
    except KeyboardInterrupt as e:
        # Ray's wait turns the Terminated our handler raised into a plain KeyboardInterrupt: the flag still knows.
        if isinstance(e, Terminated) or _sigterm.is_set():
            print(f"terminated: {kept(args.command, run_dir)}", file=err)
            return 128 + signal.SIGTERM
        print(f"interrupted: {kept(args.command, run_dir)}", file=err)
        return 130
    except OSError as e:
        print(f"error: {args.command}: {os_failure(e)}", file=err)
        return 1
    except Exception as e:
        # safetensors reports a failed write as its own error type, with the OS error number in its text.
        if found := re.search(r"\(os error (\d+)\)", str(e)):
            print(f"error: {args.command}: {os_failure(OSError(int(found[1]), os.strerror(int(found[1]))))}",
                  file=err)
            return 1
        if not _out_of_memory(e):
            raise
        print(f"error: {args.command}: out of memory{' on the GPU' if 'CUDA' in str(e) else ''}; lower the sizes "
              f"(model.*, sample.batch_size, eval.batch_size, data.docs) or use a machine with more memory; "
              f"{kept(args.command, run_dir)}", file=err)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, or torch's: a RuntimeError from its CPU allocator, torch.cuda.OutOfMemoryError on a GPU."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in str(e) or type(e).__name__ == "OutOfMemoryError"))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that the cleanup Ctrl-C gets runs for it too."""


_sigterm = threading.Event()  # set by the handler: what arrives as a KeyboardInterrupt may have been a SIGTERM


def kept(command: str, run_dir: str | None) -> str:
    """What a stopped command leaves to resume from: a new run stopped in generation 0 leaves nothing."""
    from testbed.rundir import RunDir

    if command == "eval":
        return "it writes nothing; run the same command again"
    if command == "compare":
        return "an --out folder is as it was (a report is put in place whole or not at all); run the same command again"
    if command != "run":
        return "finished runs and generations are kept; run the same command again to resume"
    if run_dir is None:
        return "stopped before the run was read; anything it had finished is kept; run the same command again"
    done = RunDir(run_dir).finished_generations()
    if not done:
        return "no generation had finished, so there is nothing to resume; run the same command again to start over"
    held = "generation 0" if done[-1] == 0 else f"generations 0-{done[-1]}"
    return f"{held} finished and kept in {run_dir}; run the same command again to resume"


def _catch_sigterm():
    """Turn SIGTERM into Terminated; returns the handler it replaces (None where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the cleanup too
        _sigterm.set()
        raise Terminated()
    _sigterm.clear()
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
