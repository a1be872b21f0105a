"""The report's figures, one function per picture, drawn with matplotlib to PNG files."""
import math

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from testbed.metrics.spec import numbers  # noqa: E402

COLORS = plt.get_cmap("tab10").colors
LINES = ("-", "--", ":", "-.")  # past ten groups the colours come round again: each round its own line style
MARKERS = ("o", "s", "^", "D")


def _direction(ax, direction: int | None) -> None:
    """An arrow at the right edge pointing the way collapse moves the metric."""
    if not direction:
        return
    tail, head = (0.25, 0.75) if direction > 0 else (0.75, 0.25)
    ax.annotate("", xy=(1.03, head), xytext=(1.03, tail), xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": "firebrick", "lw": 1.5})
    ax.text(1.06, 0.5, "collapse", transform=ax.transAxes, rotation=90, va="center", color="firebrick", fontsize=8)


def draw_metric(ax, metric: str, groups: list[dict], direction: int | None) -> None:
    """One line per group of runs; with several seeds, their mean and a band from min to max, at the generations
    every seed has (a mean over fewer seeds would move with which seeds are left, not with the metric)."""
    for i, group in enumerate(groups):
        color, round_ = COLORS[i % len(COLORS)], i // len(COLORS) % len(LINES)
        series = [{r["generation"]: r[metric] for r in (numbers(row, ".") for row in run["rows"]) if metric in r}
                  for run in group["runs"]]
        gens = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not gens:
            continue
        values = [[s[g] for s in series] for g in gens]
        ax.plot(gens, [np.mean(v) for v in values], marker=MARKERS[round_], ms=3, ls=LINES[round_], color=color,
                label=group["label"])
        if len(series) > 1:
            ax.fill_between(gens, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2, lw=0)
    ax.set_title(metric, fontsize=10)
    ax.set_xlabel("generation", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    _direction(ax, direction)


def metric_figure(path, metric: str, groups: list[dict], direction: int | None) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    draw_metric(ax, metric, groups, direction)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def overview_figure(path, metrics: list[str], groups: list[dict], directions: dict) -> None:
    """The headline metrics in one grid, one shared legend: the picture to show first."""
    cols = 3
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        draw_metric(ax, metric, groups, directions.get(metric))
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 5), 1, 1))
    _save(fig, path)


def zipf_figure(path, title: str, curves: dict[str, list[int]], reference: list[int] | None) -> None:
    """Rank-frequency of word samples of one size, log-log; the human sample in black.

    curves: label -> the sample's type counts in descending order.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("viridis")
    for i, (label, counts) in enumerate(curves.items()):
        total = sum(counts)
        ax.loglog(np.arange(1, len(counts) + 1), np.array(counts) / total, color=cmap(i / max(1, len(curves) - 1)),
                  lw=1.2, label=label)
    if reference:
        total = sum(reference)
        ax.loglog(np.arange(1, len(reference) + 1), np.array(reference) / total, color="black", ls="--", lw=1.2,
                  label="human")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("rank", fontsize=8)
    ax.set_ylabel("frequency", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.legend(fontsize=7)
    _save(fig, path)


def band_heatmap(path, title: str, bands: list[str], columns: list[str], recall: list[list[float]]) -> None:
    """Recall per frequency band (rows, rarest on top) and generation (columns), 0..1."""
    data = np.array(recall, dtype=float).T  # bands x columns
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(columns), 0.9 + 0.32 * len(bands)))
    image = ax.imshow(data, cmap="magma", vmin=0, vmax=1, aspect="auto")
    for (b, c), v in np.ndenumerate(data):
        ax.text(c, b, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks(range(len(bands)), bands, fontsize=8)
    ax.set_xlabel("generation", fontsize=8)
    ax.set_ylabel("count in the human training split", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=7)
    _save(fig, path)


def _save(fig, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
