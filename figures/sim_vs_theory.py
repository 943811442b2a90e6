"""Figure: simulated ρ and E[N] against PipeSpec's closed forms, over the drafter's fill ratio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .style import plt, save


def plot_sim_vs_closed_form(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    fig, (ax_tokens, ax_rho) = plt.subplots(1, 2, figsize=(12, 4.6))
    series: dict[tuple[float, int], list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["alpha"], row["gamma"]), []).append(row)
    for (alpha, gamma), points in sorted(series.items()):
        points = sorted(points, key=lambda r: r["fill_ratio"])
        x = [p["fill_ratio"] for p in points]
        ax_tokens.errorbar(x, [p["tokens_sim"] / p["tokens_closed"] for p in points],
                           yerr=[p["tokens_ci99"] / p["tokens_closed"] for p in points], marker="o", ms=3,
                           capsize=2, label=f"α = {alpha}, γ = {gamma}")
        ax_rho.errorbar(x, [p["rho_sim"] - p["rho_closed"] for p in points], yerr=[p["rho_ci99"] for p in points],
                        marker="o", ms=3, capsize=2, label=f"α = {alpha}, γ = {gamma}")
    ticks = sorted({row["fill_ratio"] for row in rows})
    for ax in (ax_tokens, ax_rho):
        ax.axvline(1.0, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("drafter fill ratio (γ + 1)·t_draft / t_verifier")
        ax.grid(alpha=0.3)
    ax_tokens.axhline(1.0, color="black", lw=0.8)
    ax_tokens.set(ylabel="simulated E[N] / closed-form E[N]",
                  title="Tokens per verifier step: exact while the drafter refills a window")
    ax_rho.axhline(0.0, color="black", lw=0.8)
    ax_rho.set(ylabel="simulated ρ − closed-form ρ", title="Verification probability ρ")
    ax_tokens.legend(fontsize=6, ncol=3)
    fig.text(0.5, -0.04, "Left of the dashed line the drafter produces the γ + 1 tokens a verification needs within "
             "one verifier step, the closed form's assumption; right of it windows come up short and E[N] falls "
             "below the closed form (99% CIs over seeds).", ha="center", fontsize=8, wrap=True)
    return save(fig, path)


def plot_predicted_vs_measured(path: str | Path, rows: Sequence[dict[str, Any]], title: str = "") -> Path:
    """Per configuration: measured, simulated and closed-form ms/token side by side, errors annotated."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(rows) + 2), 4.8))
    x = np.arange(len(rows))
    for offset, (key, label, colour) in zip((-0.27, 0.0, 0.27), (
            ("measured_ms_per_token", "measured", "black"), ("sim_ms_per_token", "simulator", "tab:green"),
            ("closed_ms_per_token", "closed form", "tab:orange")), strict=True):
        bars = ax.bar(x + offset, [r[key] for r in rows], width=0.26, label=label, color=colour,
                      alpha=0.85 if key != "measured_ms_per_token" else 0.6)
        if key != "measured_ms_per_token":
            error = "sim_error" if key == "sim_ms_per_token" else "closed_error"
            for bar, row in zip(bars, rows, strict=True):
                ax.annotate(f"{row[error]:+.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(x, [r["config"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="decode ms per token", title=title or "Predicted vs measured")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, path)
