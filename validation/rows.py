"""What `pipespec validate` measures and reports per configuration, as typed dicts (they are written to
validate.json and validate.csv as they are)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Measured(TypedDict):
    """One configuration's backend runs: one run's (`measure_once`), or the medians over its repeats (`combine`)."""

    decode_ms_per_token: float  # (wall time − time to first token) / (tokens − 1), over all prompts
    ms_per_token: float
    num_tokens: int
    outputs: list[list[int]] | None  # per prompt; after combine, None unless every repeat produced the same
    pairs: list[dict[str, Any]]  # the backend's pair summaries (alpha_estimate, mean_accepted_length, …)
    stages: list[dict[str, Any]]  # the backend's stage summaries
    interference: float | None  # the share of the CPUs other processes took (None: unknown)
    repeats_interference: NotRequired[list[float | None]]  # combine's: each repeat's
    repeats_decode_ms_per_token: NotRequired[list[float]]


class MeasuredRow(TypedDict):
    """A table row's measured half (`measured_row`, or read back from a finished run's validate.json)."""

    config: str
    scheme: str
    chain: str  # "A -> B"
    placement: str
    window: str
    measured_ms_per_token: float  # decode ms/token, median over repeats
    measured_overall_ms_per_token: float
    lossless: bool  # every prompt's output equals the AR baseline's
    output_lengths: list[int] | None
    measured_alpha: list[float]  # per pair, draft first
    measured_mean_accepted_length: list[float]
    measured_histograms: list[dict[str, int]]
    repeats_ms_per_token: list[float]
    measured_stages: list[dict[str, Any]] | None
    repeats_interference: list[float | None]
    disturbed: bool


class Row(MeasuredRow):
    """A whole row: the measured half, the prediction from the profile and traces alone, and the speedups over
    the AR row and the errors against measured."""

    sim_ms_per_token: float
    closed_ms_per_token: float
    trace_alpha: list[float]  # the acceptance replayed, per pair
    sim_histograms: list[dict[str, int]]
    sim_stages: list[dict[str, Any]]
    measured_speedup: float
    sim_speedup: float
    closed_speedup: float
    measured_spread: float  # the repeats' range over their median
    sim_error: float  # predicted / measured − 1
    closed_error: float
