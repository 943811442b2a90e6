"""The PipeSpec paper's A100 experiments, predicted from its calibration: the simulator and the closed forms
beside what the authors reported (`pipespec/data/pipespec-a100-humaneval.json`).

- `ablation`: synchronous vs asynchronous × single draft (8B → 70B) vs multiple drafts (1B → 8B → 70B),
  with AR: ms/token and speedup, simulated (median over seeds) and closed-form, and the reported speedups.
- `lookahead`: ms/token against lookahead 1–20 — SD's window γ, PipeSpec's cap on drafts per verification.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ..acceptance import Bernoulli
from ..schemes import get
from ..sim import calibration
from ..sim.config import SimConfig
from ..sim.plan import Inputs
from ..sim.presets import preset
from ..sim.run import simulate_seeds

SINGLE, MULTI = ("M1", "M2"), ("M0", "M1", "M2")
NAMES = {"M0": "1B", "M1": "8B", "M2": "70B"}


def inputs(context: int = 128) -> Inputs:
    """The calibration as planning inputs (latency models and pairwise acceptance), for the closed forms."""
    acceptance = {tuple(k.split("->")): v for k, v in calibration.acceptance_models().items()}
    return Inputs(calibration.latency_models(), acceptance, "M2", calibration.DEVICES_NEEDED, context)  # type: ignore[arg-type]


def _config(scheme: str, chain: Sequence[str], **values: Any) -> SimConfig:
    base = preset(f"{scheme}-a100")
    index = [calibration.MODEL_NAMES.index(m) for m in chain]
    acceptance = {"M0": base.acceptance[0], "M1": base.acceptance[1]}
    return base.with_values(scheme=scheme, latency=tuple(base.latency[i] for i in index),
                            names=tuple(base.names[i] for i in index),
                            acceptance=tuple(acceptance[m] for m in chain[:-1]) or (Bernoulli(1.0),), **values)


def _median_ms(config: SimConfig, seeds: int) -> float:
    runs = simulate_seeds(config, seeds)
    return statistics.median(r.ms_per_token for r in runs)


def ablation(num_tokens: int = 2000, seeds: int = 3, gamma: int = 8) -> list[dict[str, Any]]:
    """Rows: AR, SD single, SD multi, PipeSpec single, PipeSpec multi."""
    planning = inputs()
    reported = calibration.measured()["reported_speedup"]
    ar_ms = planning.t("M2", 1) * 1e3
    rows = [{"scheme": "AR", "models": "70B", "sim_ms_per_token": ar_ms, "closed_ms_per_token": ar_ms,
             "reported_speedup": 1.0}]
    for scheme, label, window in (("sd", "synchronous", gamma),
                                  ("pipespec", "asynchronous (PipeSpec)", calibration.MAX_DRAFTS)):
        for chain, reported_key in ((SINGLE, "single_draft"), (MULTI, "multiple_drafts")):
            key = {"sd": f"sync_ablation_{reported_key}", "pipespec": "async_single_draft"
                   if chain == SINGLE else "pipespec_M0_M1_M2"}[scheme]
            sim_ms = _median_ms(_config(scheme, chain, gamma=gamma, num_tokens=num_tokens), seeds)
            closed = get(scheme).closed_form_s(planning, chain, window)
            rows.append({"scheme": label, "models": " → ".join(NAMES[m] for m in chain), "sim_ms_per_token": sim_ms,
                         "closed_ms_per_token": closed * 1e3, "reported_speedup": reported.get(key)})
    for row in rows:
        row["sim_speedup"] = ar_ms / row["sim_ms_per_token"]
        row["closed_speedup"] = ar_ms / row["closed_ms_per_token"]
    return rows


def lookahead(lookaheads: Sequence[int] = tuple(range(1, 21)), num_tokens: int = 1000, seeds: int = 2,
              progress: Callable[[Any], Any] = lambda it: it) -> list[dict[str, Any]]:
    """Rows (scheme, lookahead, sim and closed-form ms/token) for the 3-model chain."""
    planning = inputs()
    rows = []
    for value in progress(list(lookaheads)):
        sd_ms = _median_ms(_config("sd", MULTI, gamma=value, num_tokens=num_tokens), seeds)
        pipe_ms = _median_ms(_config("pipespec", MULTI, max_drafts=value, num_tokens=num_tokens), seeds)
        rows.append({"scheme": "sd", "lookahead": value, "sim_ms_per_token": sd_ms,
                     "closed_ms_per_token": get("sd").closed_form_s(planning, MULTI, value) * 1e3})
        rows.append({"scheme": "pipespec", "lookahead": value, "sim_ms_per_token": pipe_ms,
                     "closed_ms_per_token": get("pipespec").closed_form_s(planning, MULTI, value) * 1e3})
    return rows
