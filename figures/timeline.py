"""Per-stage timelines of a simulated run (the PipeSpec paper's toy figure and utilisation plots)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..sim.result import SimResult
from .style import plt, save

COLOURS = {"generate": "#4C72B0", "verify": "#55A868", "forward": "#8172B2", "aborted": "#C44E52",
           "discarded": "#DD8452"}


def draw_timeline(ax: plt.Axes, result: SimResult, until_s: float | None = None, time_unit_s: float = 1e-3,
                  unit: str = "ms") -> None:
    """One row per stage, a bar per forward coloured by kind (generate, verify, aborted/discarded)."""
    if result.timeline is None:
        raise ValueError("the result has no timeline: simulate with timeline=True")
    until = result.elapsed_s if until_s is None else until_s
    rows = len(result.stages)
    for kind, colour in COLOURS.items():
        spans: dict[int, list[tuple[float, float]]] = {}
        for e in result.timeline:
            if e.kind == kind and e.start_s < until:
                width = (min(e.end_s, until) - e.start_s) / time_unit_s
                spans.setdefault(e.stage, []).append((e.start_s / time_unit_s, width))
        for stage, bars in spans.items():
            ax.broken_barh(bars, (rows - 1 - stage - 0.4, 0.8), facecolors=colour, edgecolor="white", linewidth=0.3,
                           label=kind)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper right", fontsize=7, ncol=len(unique))
    ax.set_yticks(range(rows), [s.name for s in reversed(result.stages)])
    ax.set_xlim(0, until / time_unit_s)
    ax.set_xlabel(f"time ({unit})")


def plot_timeline(path: str | Path, result: SimResult, until_s: float | None = None, title: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(11, 0.7 * len(result.stages) + 1.6))
    draw_timeline(ax, result, until_s)
    ax.set_title(title or f"{result.scheme}: {result.ms_per_token:.2f} ms/token per stage")
    return save(fig, path)


def plot_timelines(path: str | Path, results: Sequence[tuple[str, SimResult]], until_s: float,
                   time_unit_s: float = 1.0, unit: str = "s") -> Path:
    """Several runs stacked on one time axis (e.g. AR, SD and PipeSpec on the same models)."""
    heights = [0.6 * len(r.stages) + 0.8 for _, r in results]
    fig, axes = plt.subplots(len(results), 1, figsize=(11, sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (label, result) in zip(axes[:, 0], results, strict=True):
        draw_timeline(ax, result, until_s, time_unit_s, unit)
        ax.set_title(f"{label}: {result.num_tokens / result.elapsed_s * time_unit_s:.2f} tokens per {unit}",
                     fontsize=9, loc="left")
    return save(fig, path)
