"""Figure: predicted speedup over AR against pipeline depth (`pipespec plan --plot`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .style import plt, save


def plot_speedup_vs_depth(path: str | Path, best_by_depth: Sequence[dict[str, Any]], finalists: Sequence[Any],
                          ar_s: float, title: str = "") -> Path:
    """The best closed-form speedup per depth (dashed), the best simulated (solid) and every simulated
    finalist (markers, by scheme)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot([r["depth"] for r in best_by_depth], [r["closed_speedup"] for r in best_by_depth], "k--", marker="o",
            ms=4, lw=1, label="best by closed form")
    for r in best_by_depth:
        ax.annotate(r["chain"], (r["depth"], r["closed_speedup"]), fontsize=6, xytext=(4, 4),
                    textcoords="offset points")
    simulated: dict[int, float] = {}
    for c in finalists:
        simulated[c.depth] = max(simulated.get(c.depth, 0.0), c.sim["speedup"])
    ax.plot(sorted(simulated), [simulated[k] for k in sorted(simulated)], color="tab:green", lw=1.5,
            label="best simulated finalist")
    markers = {"ar": "s", "sd": "^", "pipespec": "o"}
    for scheme, marker in markers.items():
        points = [c for c in finalists if c.scheme == scheme]
        if points:
            ax.scatter([c.depth for c in points], [c.sim["speedup"] for c in points], marker=marker, alpha=0.7,
                       label=f"{scheme} (simulated finalists)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(sorted({r["depth"] for r in best_by_depth}))
    ax.set(xlabel="pipeline depth k (models in the chain)", ylabel="predicted speedup over AR",
           title=f"Speedup against depth{': ' + title if title else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)
