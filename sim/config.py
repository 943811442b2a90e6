"""The simulator's one configuration dataclass: CLI flags, config files and sweeps all build it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

from ..acceptance import Acceptance, Trace, parse_acceptance
from ..config import field_text, option, parsed_values
from ..errors import MAX_WINDOW, check_int, require
from ..latency import LatencyModel, parse_latency
from ..schemes import SCHEMES, Scheme, get
from ..specs import spec_text

_LATENCY_SPECS = {"parse": parse_latency, "text": spec_text}


@dataclass(frozen=True)
class SimConfig:
    scheme: str = option("pipespec", " | ".join(SCHEMES), choices=SCHEMES)
    latency: tuple[LatencyModel, ...] = option(
        tuple(parse_latency(spec, "--latency") for spec in ("12", "28", "431")),
        "forward latency per model, draft first, final verifier last: MS (constant, ms), affine:A,B,C "
        "(ms: A + B·tokens + C·context), or profile:FILE[#MODEL][@quantiles] (measured; @quantiles adds "
        "jitter drawn from the measured quantiles). ppsd: one model. specpipe: draft, target", **_LATENCY_SPECS)
    acceptance: tuple[Acceptance, ...] = option(
        (parse_acceptance("0.9", "--acceptance"),),
        "per adjacent pair, draft first: α (i.i.d.), pos:A1,A2,... (α_j by window position), "
        "markov:P11,P01 (agreement carried across windows), trace:FILE[#PAIR] (replayed matches); one value is "
        "used for every pair. ppsd: exit-head α; "
        "specpipe: tree hit rate h", parse=parse_acceptance, text=spec_text)
    names: tuple[str, ...] = option((), "model names (default M0, M1, ...)")
    gamma: int = option(8, "sd: drafts per round (initial window for --schedule dynamic)")
    schedule: str = option("fixed", "sd window: fixed, or dynamic (+2 after a full acceptance, -1 otherwise)",
                           choices=("fixed", "dynamic"))
    max_drafts: int | None = option(None, "pipespec: cap on drafts one step verifies (default: all available)")
    min_drafts: int = option(1, "pipespec: a stage finding fewer drafts waits for its upstream's forward in "
                             "flight instead of generating a token itself (1: never waits)")
    coordination: str = option(
        "lockfree", "how stages synchronise. pipespec: lockfree (a verifier rolls its upstream back at once and goes "
        "on) or reference (the PipeSpec authors' protocol: after every step a verifier waits until its upstream has "
        "answered its sync request, which the upstream does between two of its own steps; a middle stage then asks "
        "its own upstream and waits). sd: lockfree gives a drafter the verifier's bonus token; reference (the "
        "authors' synchronous chain) lets it draft that position itself", choices=("lockfree", "reference"))
    rollback: str = option("abort", "on a rollback, upstream work in flight is: abort (interrupted at once) or "
                           "finish (runs to the end, then is discarded, as a GPU kernel would)",
                           choices=("abort", "finish"))
    num_tokens: int = option(2000, "output tokens to generate")
    prompt_len: int = option(128, "context length before the first output token")
    trace_sequence: int | None = option(None, "replay acceptance traces from the start of this prompt's sequence "
                                        "(0-based; default: from the start of their concatenation)")
    trace_position: int = option(0, "output position of that sequence (or of the concatenation) to replay from")
    devices: tuple[str, ...] = option((), "device name per stage; stages naming the same device share it "
                                      "(default: a device each)")
    device_capacity: int = option(1, "forwards one device runs at once")
    device_sharing: str = option("queue", "stages sharing a device: queue (one forward at a time, first come "
                                 "first served, as on a GPU stream) or timeslice (all at once, n forwards "
                                 "each at capacity/n of their speed, as an OS shares a CPU core)",
                                 choices=("queue", "timeslice"))
    num_layers: int = option(32, "ppsd: layers N of the model")
    exit_layer: int = option(8, "ppsd: early-exit layer E (1 <= E < N)")
    pp_stages: int = option(2, "ppsd/specpipe: pipeline stages P the model's layers are split over")
    tree_width: int = option(1, "specpipe: tree nodes per level (tokens each pipeline step forwards)")
    tree_depth: int | None = option(None, "specpipe: tree levels in flight (default: P; 1 is plain pipeline "
                                    "parallelism, the draft never consulted)")
    stage_latency: tuple[LatencyModel, ...] = option((), "ppsd/specpipe: the latency of each layer stage, timed "
                                                     "as it runs (default: the model's, times its layers' share "
                                                     "plus the head's)", **_LATENCY_SPECS)
    head_share: float = option(0.0, "ppsd/specpipe: share of one forward spent in the output head (final norm "
                               "and vocabulary projection), paid by the stage holding it: the last, and in "
                               "ppsd also the exit's")
    lazy_drafter: bool = option(True, "pipespec: compute a dedicated stage 0's progress on demand instead "
                                "of one event per draft token (same results, faster)")
    timeline: bool = option(False, "record every forward (for the Chrome trace and timeline plot)")
    seed: int | None = option(0, "seed of the run's SeedSequence (one generator per random source)")

    @classmethod
    def from_text(cls, **values: Any) -> SimConfig:
        """A configuration from values as a config file holds them, spec fields as text ("12", "trace:F#P"):
        the edge for code and tests that write specs; the files they name are read here, once."""
        return cls(**parsed_values(cls, values))

    def with_text(self, **values: Any) -> SimConfig:
        """This configuration with `values` replaced, spec fields given as text (as for `from_text`)."""
        return replace(self, **parsed_values(SimConfig, values))

    def __post_init__(self) -> None:
        for name in ("latency", "acceptance", "stage_latency"):
            if any(isinstance(v, str) for v in getattr(self, name)):
                raise TypeError(f"SimConfig.{name} holds parsed models, not spec text: parse it at the edge "
                                "(SimConfig.from_text, parse_latency, parse_acceptance)")
        for f in fields(self):  # the scheme first: the checks below depend on it
            allowed, value = f.metadata.get("choices"), getattr(self, f.name)
            require(not allowed or value in allowed,
                    f"--{f.name.replace('_', '-')} must be one of {', '.join(allowed or ())}, got {value!r}")
        require(len(self.latency) >= 1, "--latency needs at least one model")
        scheme = self.scheme_info
        require(len(self.latency) >= scheme.min_models,
                f"--latency: scheme {self.scheme} needs at least {scheme.min_models} models, got {len(self.latency)}")
        require(scheme.exact_models is None or len(self.latency) == scheme.exact_models, scheme.exact_models_message)
        pairs = self.num_pairs
        allowed = "1 value" if pairs <= 1 else f"1 or {pairs} values (one per adjacent pair)"
        require(pairs == 0 or len(self.acceptance) in (1, pairs),
                f"--acceptance: give {allowed}, got {len(self.acceptance)}")
        require(not self.names or len(self.names) == len(self.latency),
                f"--names: give one per model ({len(self.latency)}), got {len(self.names)}")
        require(not self.devices or len(self.devices) == self.num_stage_devices,
                f"--devices: give one per stage ({self.num_stage_devices}), got {len(self.devices)}")
        check_int("--gamma", self.gamma, 1, MAX_WINDOW)
        if self.max_drafts is not None:
            check_int("--max-drafts", self.max_drafts, 1, MAX_WINDOW)
        check_int("--min-drafts", self.min_drafts, 1, MAX_WINDOW)
        require(self.max_drafts is None or self.min_drafts <= self.max_drafts,
                f"--min-drafts ({self.min_drafts}) must be <= --max-drafts ({self.max_drafts})")
        require(len(set(self.names)) == len(self.names),
                f"--names must be distinct, got {' '.join(self.names)}")
        check_int("--num-tokens", self.num_tokens, 1)
        check_int("--prompt-len", self.prompt_len, 0)
        if self.trace_sequence is not None:
            check_int("--trace-sequence", self.trace_sequence, 0)
        check_int("--trace-position", self.trace_position, 0)
        check_int("--device-capacity", self.device_capacity, 1)
        check_int("--tree-width", self.tree_width, 1)
        check_int("--num-layers", self.num_layers, 2)
        check_int("--exit-layer", self.exit_layer, 1)
        check_int("--pp-stages", self.pp_stages, 1)
        if self.tree_depth is not None:
            check_int("--tree-depth", self.tree_depth, 1)
        require(0.0 <= self.head_share < 1.0, f"--head-share must be in [0, 1), got {self.head_share}")
        require(self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
                f"--seed must be an integer >= 0, got {self.seed!r}")
        scheme.check_sim(self)
        if self.stage_latency:
            layered = [s for s in SCHEMES if get(s).layer_stages]
            require(scheme.layer_stages, f"--stage-latency applies to {' and '.join(layered)}, not {self.scheme}")
            require(len(self.stage_latency) == self.pp_stages,
                    f"--stage-latency: give one per stage ({self.pp_stages}), got {len(self.stage_latency)}")
        self._check_trace_replay()

    def _check_trace_replay(self) -> None:
        """--trace-sequence / --trace-position name a prompt and a position the replayed traces hold."""
        if self.trace_sequence is None and self.trace_position == 0:
            return
        traces = [m for m in self.acceptance_models[: max(self.num_pairs, 1)] if isinstance(m, Trace)]
        require(bool(traces), "--trace-sequence/--trace-position replay a trace: give --acceptance trace:FILE")
        for trace in traces:
            count = len(trace.starts)
            k = 0 if self.trace_sequence is None else self.trace_sequence
            require(k < count, f"--trace-sequence must be < {count} (the prompts in {trace.name}), got {k}")
            end = trace.starts[k + 1] if k + 1 < count else len(trace.bits)
            length = end - trace.starts[k] if self.trace_sequence is not None else len(trace.bits)
            require(self.trace_position < length, f"--trace-position must be < {length} (the positions of that "
                                                  f"sequence of {trace.name}), got {self.trace_position}")

    @property
    def scheme_info(self) -> Scheme:
        """The scheme's entry in the scheme table."""
        return get(self.scheme)

    @property
    def num_pairs(self) -> int:
        return self.scheme_info.sim_pairs(self)

    @property
    def num_stage_devices(self) -> int:
        return self.scheme_info.sim_stage_devices(self)

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.names or tuple(f"M{i}" for i in range(len(self.latency)))

    @property
    def acceptance_models(self) -> tuple[Acceptance, ...]:
        """One model per pair (a single --acceptance is every pair's)."""
        models = self.acceptance * max(self.num_pairs, 1) if len(self.acceptance) == 1 else self.acceptance
        return models[: max(self.num_pairs, 1)]

    @cached_property
    def ppsd_split(self) -> tuple[tuple[int, ...], int]:
        """(layers per stage, index of the last early stage): the exit sits on a stage boundary, the
        early layers split evenly over round(P·E/N) stages (at least 1) and the late ones over the rest."""
        p, e, n = self.pp_stages, self.exit_layer, self.num_layers
        early = min(max(1, round(p * e / n)), p - 1)
        late = p - early
        require(e >= early and n - e >= late,
                f"--pp-stages {p} cannot split {e} early and {n - e} late layers into non-empty stages")
        return _even(e, early) + _even(n - e, late), early - 1

    def with_values(self, **values: Any) -> SimConfig:
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as results record it (spec fields as the text they were given as)."""
        return {f.name: field_text(f, getattr(self, f.name)) for f in fields(self)}


def _even(total: int, parts: int) -> tuple[int, ...]:
    base, extra = divmod(total, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))
