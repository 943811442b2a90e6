"""The PipeSpec authors' A100 measurements (LLaMA 3.2-1B → 3.1-8B → 3.1-70B NF4, HumanEval, greedy)
turned into simulator inputs.

Source: pipespec/data/pipespec-a100-humaneval.json, copied from ../shared/calibration/ (summary
statistics the project's founders extracted from the public result files of the PipeSpec authors'
repository; see its "source" field). What we derive, and how:
- latency profiles: each model's step latency (median, p10, p90) from the asynchronous PipeSpec run;
  M2's single-token forward from the autoregressive run (120 ms) and its multi-token verification
  forward from the PipeSpec run (431 ms) — the 4-bit kernels' fast path is for one token only. The
  summary gives no dependence on tokens per forward beyond that, so n ≥ 2 is flat up to the 100-draft cap.
- acceptance: per-position α_j (hazards) from the synchronous chain's histograms of tokens added per
  verification (fixed lookahead, so window truncation is known): α_j = P(N > j | N ≥ j). The bins
  at and beyond the window's end are truncated, not accepted-token evidence, and are left out.

Regenerate the committed profile with `python -m pipespec.sim.calibration`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..acceptance import Acceptance, hazard_from_histogram, parse_acceptance
from ..latency import LatencyModel, ProfilePoint
from ..profiles import load_profile, write_profiles

DATA = resources.files("pipespec") / "data"
SOURCE_FILE = "pipespec-a100-humaneval.json"
PROFILE_FILE = "a100-llama3-1b-8b-70b.profile.json"
MODEL_NAMES = ("M0", "M1", "M2")
MAX_DRAFTS = 100  # the authors' cap on drafts per verification
RELIABLE_HAZARDS = {"M0->M1": 7, "M1->M2": 7}  # α_1..α_7: bins before the lookahead truncation


def source() -> dict[str, Any]:
    return json.loads((DATA / SOURCE_FILE).read_text(encoding="utf-8"))


def profile_path() -> Path:
    return Path(str(DATA / PROFILE_FILE))


def _point(num_tokens: int, stats: dict[str, float]) -> ProfilePoint:
    quantiles = ((0.1, stats["p10_ms"] / 1e3), (0.5, stats["median_ms"] / 1e3), (0.9, stats["p90_ms"] / 1e3))
    return ProfilePoint(num_tokens, 0, stats["median_ms"] / 1e3, quantiles)


def profile_models() -> dict[str, dict[str, Any]]:
    runs = source()["runs"]
    step = runs["pipespec_M0_M1_M2"]["stage_step_latency"]
    models = source()["models"]
    out: dict[str, dict[str, Any]] = {}
    for name in ("M0", "M1"):
        out[name] = {"model": models[name], "device": "A100-40GB", "source": SOURCE_FILE,
                     "points": [_point(1, step[name]), _point(MAX_DRAFTS + 1, step[name])]}
    out["M2"] = {"model": models["M2"], "device": "2x A100-40GB", "source": SOURCE_FILE,
                 "points": [_point(1, runs["autoregressive_M2"]["token_latency"]), _point(2, step["M2"]),
                            _point(MAX_DRAFTS + 1, step["M2"])]}
    return out


def acceptance_hazards() -> dict[str, tuple[float, ...]]:
    histograms = source()["runs"]["synchronous_chain_M0_M1_M2"]["accepted_tokens_distribution"]
    return {pair: hazard_from_histogram(histograms[pair])[:RELIABLE_HAZARDS[pair]] for pair in RELIABLE_HAZARDS}


def latency_models() -> dict[str, LatencyModel]:
    """Each calibrated model's latency: its profile in the committed file (spec profile:FILE#M0, ...)."""
    path = profile_path()
    return {m: load_profile(path, m) for m in MODEL_NAMES}


def acceptance_models() -> dict[str, Acceptance]:
    """Each calibrated pair's acceptance ("M0->M1": positional, its hazards to 4 decimals as the spec writes
    them: "pos:a1,a2,...")."""
    return {pair: parse_acceptance("pos:" + ",".join(f"{a:.4f}" for a in h), f"calibration {pair}")
            for pair, h in acceptance_hazards().items()}


DEVICES_NEEDED = {"M0": 1, "M1": 1, "M2": 2}  # the 70B NF4 ran on two A100-40GB


def measured() -> dict[str, Any]:
    """What the authors measured, for comparison with simulated runs (ms/token, histograms)."""
    runs = source()["runs"]
    return {
        "ar_ms_per_token": runs["autoregressive_M2"]["token_latency"]["median_ms"],
        "pipespec_histograms": runs["pipespec_M0_M1_M2"]["accepted_tokens_distribution"],
        "sync_histograms": runs["synchronous_chain_M0_M1_M2"]["accepted_tokens_distribution"],
        "reported_speedup": {"pipespec_M0_M1_M2": 2.54, "sync_ablation_single_draft": 1.32,
                             "sync_ablation_multiple_drafts": 1.37, "async_single_draft": 2.27},
        "mean_generated_tokens": 289,
    }


if __name__ == "__main__":
    write_profiles(profile_path(), profile_models())
    print(f"wrote {profile_path()}")
