"""Figures drawn from the closed forms alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..theory import pipespec, ppsd, sd, specpipe
from .style import plt, save


def plot_rho_and_tokens(path: str | Path, gammas: Sequence[int] = (1, 2, 4, 8)) -> Path:
    """ρ and E[N(M_i)] against α for several γ (PipeSpec §4), with SD's E_round dashed."""
    alphas = np.linspace(0.0, 1.0, 201)
    fig, (ax_rho, ax_tokens) = plt.subplots(1, 2, figsize=(10, 4))
    for g in gammas:
        (line,) = ax_rho.plot(alphas, pipespec.rho(alphas, g), label=f"γ = {g}")
        ax_tokens.plot(alphas, pipespec.expected_tokens(alphas, g), color=line.get_color(), label=f"E[N], γ = {g}")
        ax_tokens.plot(alphas, sd.expected_tokens(alphas, g), color=line.get_color(), ls="--", lw=0.8)
    ax_rho.set(xlabel="acceptance rate α", ylabel="ρ (steady-state P(verify))", title="Verification probability")
    ax_tokens.set(xlabel="acceptance rate α", ylabel="tokens per step",
                  title="E[N(M_i)] (solid) vs SD tokens per round (dashed)")
    ax_tokens.axhline(1.0, color="grey", lw=0.8)
    for ax in (ax_rho, ax_tokens):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def plot_async_vs_sync(path: str | Path, gammas: Sequence[int] = (2, 4, 8)) -> Path:
    """Where E[N] beats S_SD over (α, c): the break-even c*(α, γ) curves."""
    alphas = np.linspace(0.01, 0.99, 197)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g in gammas:
        ax.plot(alphas, pipespec.breakeven_c(alphas, g), label=f"γ = {g}")
    ax.set(xlabel="acceptance rate α", ylabel="c = t_draft / t_target",
           title="Above a curve the asynchronous pipeline's E[N] beats SD")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def plot_specpipe(path: str | Path, stages: Sequence[int] = (2, 4, 8, 16)) -> Path:
    """SpecPipe speedup over plain pipeline parallelism against tree hit rate, per depth P."""
    hits = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for p in stages:
        ax.plot(hits, specpipe.speedup(hits, p), label=f"P = {p}")
    ax.set(xlabel="tree hit rate h", ylabel="speedup over plain PP", title="SpecPipe (derived model)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def plot_ppsd(path: str | Path, num_layers: int = 32, exits: Sequence[int] = (4, 8, 16), gamma: int = 4) -> Path:
    """PPSD speedup against α per exit layer, with the non-pipelined early-exit baseline dashed."""
    alphas = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for e in exits:
        (line,) = ax.plot(alphas, ppsd.pipelined_speedup(alphas, e, num_layers), label=f"PPSD, E = {e}/{num_layers}")
        ax.plot(alphas, ppsd.early_exit_speedup(alphas, gamma, e, num_layers), ls="--", color=line.get_color(),
                label=f"early-exit SD γ = {gamma}, E = {e}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="acceptance rate α", ylabel="speedup over AR", title="PPSD (derived model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)
