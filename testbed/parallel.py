"""The runs of a sweep or a lab: one after another in this process, or N at once on Ray.

`--jobs 1` without `--address` runs every run here, in order, as testbed always
has, and never imports ray. `--jobs N` starts a local Ray instance and keeps N
runs going, each a Ray task in its own worker process with its own share of
the CPU threads (and its own GPU, or a share of one, when Ray sees GPUs); `--address` sends the
same tasks to an existing Ray cluster instead (a Ray that the calling process,
a notebook say, has already started is used as it is). Each run has its own run_dir
and resumes from it, so a rerun skips the finished runs and continues the
killed ones, whichever worker gets them. A run that fails is reported and
the others go on.

Threads: torch's result can depend on how many threads split a reduction, so
a run's threads are part of what makes it reproducible. `threads` (the
`--threads` option) sets them for every run, in either path; left unset, a
parallel run gets cores // jobs, and an in-process run keeps torch's default
(all cores, as before): give the same --threads to compare --jobs 1 with
--jobs N number for number.
"""
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from testbed import TestbedError
from testbed.config import Config
from testbed.rundir import RunDir, check_can_hold, os_failure


def run_all(runs: list[tuple[str, Config]], jobs: int = 1, threads: int | None = None, address: str | None = None,
            what: str = "sweep", say=print) -> dict[str, str]:
    """Run (or resume) every (name, config); returns {name: error} for the runs that failed, one line each."""
    if address is None:  # a cluster's folders are its own to check
        for _, cfg in runs:
            check_can_hold(cfg.run_dir)
    say = _settings_notes_once(say)
    with on_ray(jobs, threads, address):
        if jobs == 1 and address is None:
            return _in_process(runs, threads, what, say)
        return _on_ray(runs, jobs, threads, address, what, say)


# Lines about the settings every run shares, not about the run: said once a sweep, not once a run (a lab of 15 runs
# said "semantic_diversity off" 15 times between the lines that matter).
SETTINGS_NOTES = ("semantic_diversity off:",)


def _settings_notes_once(say):
    said = set()

    def once(text):
        line = str(text)
        note = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line  # a Ray run's [name] prefix
        if note.startswith(SETTINGS_NOTES):
            if note in said:
                return
            said.add(note)
        say(text)
    return once


def cores() -> int:
    """CPU cores this process may use (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _in_process(runs, threads, what, say) -> dict[str, str]:
    import torch

    from testbed import loop

    failed = {}
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for i, (name, cfg) in enumerate(runs):
            left = len(runs) - i - 1
            if RunDir(cfg.run_dir).complete(cfg.generations):  # counted once run() has checked it is the same run
                say(f"{what}: checking {name} ({_counts(i - len(failed), 1, left, failed)})")
            else:
                say(f"{what}: {name} ({_counts(i - len(failed), 1, left, failed)})")
            try:
                loop.run(cfg, say=say)
            except Exception as e:  # the other runs go on; a bug's traceback is shown here, its line at the end
                if not isinstance(e, (TestbedError, OSError)):
                    say(traceback.format_exc().rstrip())
                failed[name] = _line(e)
                say(f"{what}: {name} failed: {failed[name]}")
    finally:
        torch.set_num_threads(before)  # a notebook that calls run_lab keeps its own setting
    return failed


def _run_one(cfg: Config, threads: int, name: str, lines) -> None:
    """One run in a Ray worker: its lines go to the driver through `lines` (a Ray queue), marked with the run's
    name. Printed, Ray would forward them later, after the driver's own lines, and the last ones not at all once
    the driver shuts Ray down."""
    import torch

    from testbed import loop

    torch.set_num_threads(threads)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and threading.current_thread() is threading.main_thread():
        # A Ray started by a process that ignores SIGINT (a background job's) gives its workers that too, and then
        # ray.cancel cannot interrupt the run: it raises KeyboardInterrupt through Python's SIGINT handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        loop.run(cfg, say=lambda text: lines.put("\n".join(f"[{name}] {line}" for line in str(text).splitlines())))
    finally:  # after the run's own cleanup: a Ctrl-C'd sweep waits for it before Ray goes down
        lines.put(STOPPED + name)


STOPPED = "\0stopped "  # a run's last message in the queue: not a line to show

@contextmanager
def on_ray(jobs: int, threads: int | None, address: str | None):
    """Ray for every run_all inside (a lab's shared generations 0, then its runs), started once: a local
    instance, or the cluster at address; a Ray already running (a notebook's, a test's) is used as it is and left
    running. Without jobs > 1 or an address, nothing: the runs stay in this process."""
    if jobs < 1:
        raise TestbedError(f"--jobs {jobs} must be at least 1 (the number of runs at once)")
    if threads is not None and threads < 1:
        raise TestbedError(f"--threads {threads} must be at least 1 (torch threads per run)")
    if jobs == 1 and address is None:
        yield
        return
    # Ray reads these when it is imported: lines as the runs print them, without colour codes.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        import ray
    except ImportError:
        option = f"--address {address}" if address else f"--jobs {jobs}"
        raise TestbedError(f'{option} runs the runs on Ray, which is not installed: pip install -e ".[ray]" '
                           "(or run them one at a time with --jobs 1)") from None

    started = not ray.is_initialized()
    if not started and address is not None:
        raise TestbedError(f"--address {address}: this process is already connected to a Ray (ray.init was called "
                           "before); leave out --address to run on it, or call ray.shutdown() first")
    # ray.init sets its own SIGTERM handler (and its core worker a fatal-signal one that aborts): the command's
    # own (cli: a `terminated:` line, exit 143, finished generations kept) is put back once Ray is up.
    ours = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if started and address is None:
        ray.init(address="local", num_cpus=jobs * (threads or max(1, cores() // jobs)), include_dashboard=False,
                 logging_level="error")
    elif started:
        hint = "start one with `ray start --head`, or leave out --address for a local one"
        if address != "auto" and "://" not in address:
            # Ray itself retries a wrong address for minutes (5.5 for a web server's port); a closed port is known in a
            # second, and a port that does not answer as Ray's head (a gRPC server) in a few.
            host, _, port = address.rpartition(":")
            try:
                gcs = _speaks_http2(host, int(port))
            except (OSError, ValueError):
                raise TestbedError(f"--address {address}: no Ray cluster listens there (give HOST:PORT of its head "
                                   f"node, or auto); {hint}") from None
            if not gcs:
                raise TestbedError(f"--address {address}: something listens there but not a Ray head node (it does "
                                   f"not answer as Ray's gRPC server does; give the port `ray start --head` printed, "
                                   f"6379 by default); {hint}")
        try:
            ray.init(address=address, include_dashboard=False, logging_level="error")
        except ConnectionError as e:
            raise TestbedError(f"--address {address}: no Ray cluster answered ({' '.join(str(e).split())}); {hint}") from None
    if ours is not None:
        signal.signal(signal.SIGTERM, ours)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _speaks_http2(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether the server at host:port answers the HTTP/2 connection preface with its SETTINGS frame, as the gRPC
    server of a Ray head node does and a web server, a database or a silent port does not."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # preface, empty SETTINGS
        head = b""
        try:
            while len(head) < 9 and (chunk := s.recv(9 - len(head))):
                head += chunk
        except OSError:  # a reset or a silence is an answer too: not HTTP/2
            return False
    return len(head) == 9 and head[3] == 4  # a frame header of type SETTINGS


def gpu_share(nodes: list[dict], jobs: int) -> float:
    """Each run's share of a GPU: a whole one when there is one for every run at once, else 1/k of one, k runs
    to a GPU, so that N runs at once fit on the GPUs there are. A run of the labs' GPU size is bound by Python,
    not by the GPU (docs/compare.md): three shared one H200 at the speed of one alone."""
    total = sum(int(n.get("GPU", 0)) for n in nodes)
    if not total:
        return 0
    k = -(-jobs // total)
    # Ray counts a share to 4 decimals: round down, so that k shares still fit in one GPU.
    return 1 if k == 1 else int(10_000 / k) / 10_000


def _on_ray(runs, jobs, threads, address, what, say) -> dict[str, str]:
    """jobs runs at a time on the Ray that on_ray connected this process to."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    largest = max(int(n.get("CPU", 0)) for n in nodes)
    # On a cluster, a share of the largest node: a run asking for more CPUs than any node has would never start.
    threads = threads or max(1, largest // jobs)
    if threads > largest:
        raise TestbedError(f"--threads {threads}: no Ray node has {threads} CPUs (the largest has {largest}); "
                           "lower --threads")
    from ray.exceptions import OutOfMemoryError, WorkerCrashedError
    from ray.util.queue import Queue

    gpus = gpu_share(nodes, jobs)
    # No retries: a worker killed (by the kernel when memory runs out, say) is a failed run, said in one line,
    # not a run started again three times behind the user's back.
    task = ray.remote(_run_one).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
    lines = Queue(actor_options={"num_cpus": 0})  # takes none of the CPUs the runs were given

    stopped = set()

    def show_lines():
        while not lines.empty():
            line = lines.get_nowait()
            if line.startswith(STOPPED):
                stopped.add(line.removeprefix(STOPPED))
            else:
                say(line)
    share = "" if not gpus else " and 1 GPU" if gpus == 1 else f" and 1/{round(1 / gpus)} of a GPU"
    say(f"{what}: {len(runs)} run{'s' * (len(runs) != 1)}, {jobs} at once on "
        f"{f'Ray at {address}' if address else 'a local Ray'}, {threads} torch thread{'s' * (threads != 1)}{share} each")
    failed, running, waiting, done = {}, {}, list(runs), 0
    new = {}  # name: (config, whether its folder is this sweep's to make)
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                name, cfg = waiting.pop(0)
                new[name] = (cfg, not Path(cfg.run_dir).exists())
                running[task.remote(cfg, threads, name, lines)] = (name, time.perf_counter())
                # A finished run's task only checks its folder; a cluster's folders may not be visible here (then "started").
                verb = "checking" if RunDir(cfg.run_dir).complete(cfg.generations) else "started"
                say(f"{what}: {verb} {name} ({_counts(done, len(running), len(waiting), failed)})")
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)  # back every second: Ctrl-C stops the sweep
            show_lines()  # a run's last lines are in the queue before its task returns
            if not ready:
                continue
            name, start = running.pop(ready[0])
            try:
                ray.get(ready[0])
                done += 1
                say(f"{what}: finished {name} in {time.perf_counter() - start:.0f}s "
                    f"({_counts(done, len(running), len(waiting), failed)})")
            except (WorkerCrashedError, OutOfMemoryError):
                failed[name] = (f"the worker running {name} died (killed, or out of memory); its finished "
                                "generations are kept: run the same command again to resume it")
                say(f"{what}: {name} failed: {failed[name]} ({_counts(done, len(running), len(waiting), failed)})")
            except Exception as e:
                cause = getattr(e, "cause", None) or e  # a RayTaskError carries the run's own exception
                if not isinstance(cause, (TestbedError, OSError)):
                    say(str(e).rstrip())  # with the worker's traceback
                failed[name] = _line(cause)
                say(f"{what}: {name} failed: {failed[name]} ({_counts(done, len(running), len(waiting), failed)})")
    except BaseException:  # Ctrl-C: a Ray the caller started outlives this call, and its tasks would run on
        for ref in running:
            ray.cancel(ref)
        # Each cancelled run stops as Ctrl-C stops one (a new run removes its folder) before Ray shuts down: a
        # shutdown first killed the workers mid-cleanup, and the leftover folder refused the corrected sweep.
        # ray.wait does not tell: a cancelled task's result is ready before its worker has stopped.
        names, deadline = {name for name, _ in running.values()}, time.monotonic() + 30
        while not names <= stopped and time.monotonic() < deadline:
            show_lines()
            time.sleep(0.1)
        for ref, (name, _) in running.items():
            if name in stopped:
                continue
            # The interrupt did not reach it in time (a worker deep in native code, or one whose SIGINT handler
            # _run_one could not restore): kill it, and do for a new run what its own cleanup would have done.
            ray.cancel(ref, force=True)
            ray.wait([ref], timeout=10)
            cfg, fresh = new[name]
            rundir = RunDir(cfg.run_dir)
            if fresh and rundir.root.exists() and not rundir.finished_generations():
                shutil.rmtree(rundir.root, ignore_errors=True)
        raise
    return failed


def _counts(done: int, running: int, left: int, failed: dict) -> str:
    return f"{done} done, {running} running, {left} left" + (f", {len(failed)} failed" if failed else "")


def _line(e: BaseException) -> str:
    """An error as one line: a TestbedError's message is already one; a bug's is prefixed by its type."""
    if isinstance(e, OSError):  # the disk, a permission, a path: what to do about it, as `testbed run` says it
        return os_failure(e)
    text = " ".join(str(e).split()) or "(no message)"
    return text if isinstance(e, TestbedError) else f"{type(e).__name__}: {text}"

