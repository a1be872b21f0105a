"""Experiment trackers (TensorBoard, W&B) fed through accelerate: who watched a run, not what it was.

gen_000, gen_001... hold each generation's training curve (step = optimizer
step); generations holds the metrics (step = generation).
"""
import hashlib
from pathlib import Path

from accelerate.utils import is_tensorboard_available, is_wandb_available

from testbed import TestbedError
from testbed.config import Config, to_dict


def check_trackers(track: list[str]) -> None:
    """accelerate drops a tracker whose package is missing with a debug-level note: fail instead, before anything is written."""
    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in track:
        if not available[name]():
            raise TestbedError(f'track: {name} needs the {name} package, which is not installed; '
                               f'pip install -e ".[{name}]" (or pip install {name}), or remove it from track')


class Tracking:
    """accelerate keeps one set of trackers per Accelerator: init_trackers adds to it, and
    end_training would also shut down the process group that the next generation, or the next
    run of a sweep, still trains with. So each tracker run is finished and dropped here instead.
    TensorBoard writes to <logging_dir>/<project name> but W&B takes the project name as its
    project: each tracker run gets its own logging folder, so that TensorBoard overlays the
    generations' curves, and one W&B project holds them all, grouped by run_dir.
    """

    def __init__(self, accelerator, root: Path, cfg: Config):
        self.accelerator, self.root, self.cfg = accelerator, root, cfg

    def where(self) -> str:
        """The line that tells the user where the trackers write (when cfg.track names any)."""
        folder = self.root / "tracking"
        return (f"tracking: {', '.join(self.cfg.track)} in {folder}"
                + (f" (tensorboard --logdir {folder})" if "tensorboard" in self.cfg.track else ""))

    def open(self, name: str, step: int = 0) -> None:
        """Point accelerator.log at tracker run `name` (the current one is closed first)."""
        accelerator = self.accelerator
        if not accelerator.log_with:
            return
        self.close()
        folder = self.root / "tracking"
        accelerator.project_configuration.logging_dir = str(folder / name)
        if accelerator.is_main_process:
            folder.mkdir(exist_ok=True)  # W&B writes its files here
        wandb = {"name": f"{self.root.name}/{name}", "group": self.root.name, "dir": str(folder), "config": to_dict(self.cfg)}
        if name == "generations":
            # Opened once per generation, it must stay one W&B run: continued by an id that this run
            # directory keeps (split.json is written once; config.yaml is rewritten when a run is extended),
            # not one that a new run at the same path would reuse.
            made = (self.root / "split.json").stat().st_mtime_ns
            wandb.update(id=hashlib.sha256(f"{self.root.resolve()}:{made}".encode()).hexdigest()[:16], resume="allow")
        # purge_step: where TensorBoard drops what an earlier, killed attempt logged from this step on.
        accelerator.init_trackers("testbed", init_kwargs={"tensorboard": {"purge_step": step}, "wandb": wandb})

    def close(self) -> None:
        if not self.accelerator.log_with:
            return
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers = []

    def log_generation(self, g: int, numbers: dict) -> None:
        """One generation's numeric metrics, at step g (its generation key is the step)."""
        self.open("generations", step=g)
        self.accelerator.log({k: v for k, v in numbers.items() if k != "generation"}, step=g)
        self.close()
