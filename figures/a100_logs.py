"""The PipeSpec paper's Fig 4 ({1B, 8B}: ms/token against lookahead) from the authors' logs: the synchronous
runs measured and predicted, and the asynchronous runs predicted under each coordination model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .style import plt, save


def plot_lookahead(path: str | Path, predictions: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]],
                   ar_ms: float | None, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sync = sorted((c for c in checks if c["models"] == "1B, 8B"), key=lambda c: c["lookahead"])
    ax.plot([c["lookahead"] for c in sync], [c["measured_ms_per_token"] for c in sync], "ko-", ms=4,
            label="synchronous chain, measured (authors' logs)")
    ax.plot([c["lookahead"] for c in sync], [c["predicted_ms_per_token"] for c in sync], "k--", alpha=0.7,
            label="synchronous chain, predicted")
    for coordination, style in (("lockfree", "C0s-"), ("reference", "C3^-")):
        rows = sorted((r for r in predictions if r["models"] == "1B, 8B" and r["coordination"] == coordination),
                      key=lambda r: r["lookahead"])
        ax.plot([r["lookahead"] for r in rows], [r["predicted_ms_per_token"] for r in rows], style, ms=4,
                label=f"PipeSpec (asynchronous), predicted, {coordination} coordination")
    if ar_ms is not None:
        ax.axhline(ar_ms, color="grey", ls=":", label=f"8B fp16 autoregressive, measured ({ar_ms:.1f} ms)")
    ax.set(xlabel="lookahead L (synchronous: window L-1; asynchronous: a verification waits for ≥ L-1 drafts)",
           ylabel="ms/token (prefill included)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
