"""PNG charts next to the JSON results (`--plot`): latency distributions and throughput curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import RESULTS


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def distributions(
    name: str,
    title: str,
    panels: Mapping[str, Mapping[str, Sequence[float]]],
) -> Path:
    """One panel per metric (e.g. "first token (ms)"), one box + points per series."""
    plt = _plt()
    width = sum(max(5.5, 1.5 * len(series)) for series in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.8), squeeze=False)
    for ax, (metric, series) in zip(axes[0], panels.items(), strict=True):
        labels = [k for k, v in series.items() if v]
        data = [[float(x) for x in series[k]] for k in labels]
        if data:
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20, ha="right")
            for i, values in enumerate(data, start=1):
                ax.scatter([i] * len(values), values, s=12, alpha=0.6, zorder=3)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, name)


def histogram(name: str, title: str, series: Mapping[str, Sequence[float]], unit: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = 0
    for label, values in series.items():
        if values:
            ax.hist(
                [float(v) for v in values], bins=30, alpha=0.6, label=f"{label} (n={len(values)})"
            )
            drawn += 1
    ax.set_xlabel(unit)
    ax.set_ylabel("requests")
    ax.set_title(title)
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no answered requests", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, name)


def curves(
    name: str,
    title: str,
    x: Sequence[float],
    panels: Mapping[str, Mapping[str, Sequence[float | None]]],
    xlabel: str,
) -> Path:
    """One panel per metric, one line per series, against a shared x (e.g. concurrency)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (metric, series) in zip(axes[0], panels.items(), strict=True):
        plotted = False
        for label, ys in series.items():
            pts = [(a, b) for a, b in zip(x, ys, strict=True) if b is not None]
            if pts:
                ax.plot(*zip(*pts, strict=False), marker="o", label=label)
                plotted = True
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(x), [str(v) for v in x])
        ax.set_xlabel(xlabel)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, name)


def _save(fig, plt, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")
    return path
