"""Figures of pipeline runs, simulated or measured: accepted-token histograms, ms/token against lookahead,
stage utilisation over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import PairStats
from ..sim.result import Event
from .style import plt, save


def _fractions(histogram: Mapping[int, float], size: int) -> np.ndarray:
    counts = np.zeros(size)
    for j, n in histogram.items():
        counts[min(j, size - 1)] += n
    return counts / max(1, counts.sum())


def plot_accepted_histograms(path: str | Path, pairs: Sequence[PairStats],
                             reference: Sequence[Sequence[float]] | None = None,
                             reference_label: str = "reported", title: str = "", max_bin: int = 24) -> Path:
    """Per pair: the fraction of verifications that added j tokens (bonus/correction included); with a
    reference (e.g. the authors' measured fractions, one list per pair, index j) drawn beside it. The last bin
    collects j ≥ max_bin."""
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 3.8), squeeze=False)
    for i, (ax, pair) in enumerate(zip(axes[0], pairs, strict=True)):
        bins = np.arange(max_bin + 1)
        ax.bar(bins - 0.2, _fractions(pair.tokens_added_histogram, max_bin + 1), width=0.4, label="this run")
        if reference is not None:
            ax.bar(bins + 0.2, _fractions(dict(enumerate(reference[i])), max_bin + 1), width=0.4,
                   label=reference_label)
        ax.set(xlabel=f"tokens added per verification (last bin: ≥ {max_bin})", ylabel="fraction of verifications",
               title=pair.name)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def plot_lookahead(path: str | Path, rows: Sequence[dict[str, Any]], ar_ms: float, title: str = "",
                   unlimited_ms: float | None = None) -> Path:
    """ms/token against lookahead (SD: window γ; PipeSpec: cap on drafts per verification), simulated
    (solid) and closed-form (dashed), with AR and PipeSpec without a cap as horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for scheme, colour in (("sd", "tab:orange"), ("pipespec", "tab:green")):
        points = sorted((r for r in rows if r["scheme"] == scheme), key=lambda r: r["lookahead"])
        if not points:  # e.g. validate --configs measured only one scheme's lookahead configurations
            continue
        x = [r["lookahead"] for r in points]
        ax.plot(x, [r["sim_ms_per_token"] for r in points], marker="o", ms=3, color=colour,
                label=f"{scheme} (simulated)" if "closed_ms_per_token" in points[0] else scheme)
        if "closed_ms_per_token" in points[0]:
            ax.plot(x, [r["closed_ms_per_token"] for r in points], ls="--", color=colour, lw=1,
                    label=f"{scheme} (closed form)")
    ax.axhline(ar_ms, color="black", lw=1, label="AR")
    if unlimited_ms is not None:
        ax.axhline(unlimited_ms, color="tab:green", lw=0.8, ls=":", label="pipespec, no cap")
    ax.set(xlabel="lookahead (SD: γ; PipeSpec: max drafts per verification)", ylabel="ms per token",
           title=title or "ms/token against lookahead")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def utilisation(timeline: Sequence[Event], num_stages: int, until_s: float, bins: int) -> np.ndarray:
    """(num_stages, bins) busy fraction of each stage in equal time bins, from recorded forwards."""
    edges = np.linspace(0.0, until_s, bins + 1)
    busy = np.zeros((num_stages, bins))
    for e in timeline:
        lo, hi = e.start_s, min(e.end_s, until_s)
        if hi <= lo:
            continue
        first, last = np.searchsorted(edges, lo, "right") - 1, np.searchsorted(edges, hi, "left") - 1
        for b in range(max(first, 0), min(last, bins - 1) + 1):
            busy[e.stage, b] += min(hi, edges[b + 1]) - max(lo, edges[b])
    return busy / (edges[1] - edges[0])


def plot_utilisation(path: str | Path, timeline: Sequence[Event], stage_names: Sequence[str], until_s: float,
                     bins: int = 40, title: str = "") -> Path:
    """Each stage's busy share over time; productive forwards only (aborted/discarded work shown apart)."""
    useful = [e for e in timeline if e.kind in ("generate", "verify", "forward")]
    wasted = [e for e in timeline if e.kind not in ("generate", "verify", "forward")]
    busy, lost = (utilisation(events, len(stage_names), until_s, bins) for events in (useful, wasted))
    centres = (np.arange(bins) + 0.5) * until_s / bins
    fig, axes = plt.subplots(len(stage_names), 1, figsize=(9, 1.6 * len(stage_names) + 0.8), sharex=True,
                             squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[:, 0], stage_names, strict=True)):
        ax.fill_between(centres, 0, busy[i], step="mid", color="tab:blue", alpha=0.7, label="useful")
        ax.fill_between(centres, busy[i], busy[i] + lost[i], step="mid", color="tab:red", alpha=0.6,
                        label="aborted/discarded")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title or "stage utilisation over time", fontsize=10)
    return save(fig, path)
