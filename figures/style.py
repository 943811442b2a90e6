"""Matplotlib set-up shared by every figure: a headless backend and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ..errors import require
from ..io import write_atomic


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Write `fig` as PNG (or SVG/PDF by suffix) atomically and close it."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    require(suffix in ("png", "svg", "pdf"), f"plot file must end in .png, .svg or .pdf, got {str(path)!r}")
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
