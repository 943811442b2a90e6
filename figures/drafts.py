"""Figures of the drafts: α on the built-in prompts against training tokens, and which (α, cost) pairs pay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .style import plt, save


def plot_alpha_curve(path: str | Path, records: Mapping[str, Mapping[str, Any]]) -> Path:
    """Each draft's training curve (its build.json): α on the built-in prompts where it was scored along the
    curve, else its held-out greedy agreement, against the tokens it learnt from (a draft that started from
    another trained on the same corpus starts where that one's tokens end)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, record in records.items():
        curve, before = record["curve"], record.get("tokens_before", 0)
        scored = "alpha_builtin" in curve[-1]
        key = "alpha_builtin" if scored else "agreement"
        start = f", from {record['recipe']['init']}" if before else ""
        ax.plot([(before + p["tokens"]) / 1e6 for p in curve], [p[key] for p in curve], marker="o", markersize=3,
                label=f"{name}: " + ("α on the built-in prompts" if scored else "held-out agreement (corpus)")
                + start)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("per-token acceptance / greedy agreement")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Drafts for SmolLM2-135M-Instruct against the tokens they learnt from", fontsize=10)
    return save(fig, path)


def plot_economics(path: str | Path, alphas: Sequence[float], costs: Sequence[float], pipespec: np.ndarray,
                   sd: np.ndarray, drafts: Sequence[Mapping[str, Any]], goal: float, title: str) -> Path:
    """Closed-form PipeSpec speedup over AR on an (α, draft cost) grid, its 1x, 1.25x and goal contours,
    SD's break-even (dotted), and the measured drafts."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    filled = ax.contourf(costs, alphas, pipespec, levels=np.arange(0.0, 3.01, 0.125), cmap="viridis")
    fig.colorbar(filled, ax=ax, label="PipeSpec speedup over AR (closed form, best cap)")
    lines = ax.contour(costs, alphas, pipespec, levels=[1.0, 1.25, goal], colors=["white", "orange", "red"])
    ax.clabel(lines, fmt=lambda v: f"{v:g}x")
    ax.contour(costs, alphas, sd, levels=[1.0], colors="white", linestyles="dotted")
    for d in drafts:
        x = max(d["cost"], costs[0])
        ax.plot(x, d["alpha"], "o", color="red", markeredgecolor="black")
        ax.annotate(f"{d['draft']} ({d['measured_pipespec_speedup']:.2f}x measured)", (x, d["alpha"]),
                    textcoords="offset points", xytext=(6, 4), color="white", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("draft step / target step, c = t_draft(1) / t_target(1) (one thread each)")
    ax.set_ylabel("per-token acceptance α")
    ax.set_title(title, fontsize=10)
    return save(fig, path)
