"""The simulator's one configuration: the options every scheme shares, and the scheme's own options dataclass
(`Scheme.options`). CLI flags, config files and sweep axes name both kinds as flat keys (`schemes/flat.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..acceptance import Acceptance, Trace, parse_acceptance
from ..config import check_choices, option, parsed_values
from ..errors import check_int, require
from ..latency import LatencyModel, parse_latency
from ..schemes import SCHEMES
from ..schemes.flat import SchemeConfig
from ..specs import spec_text

_LATENCY_SPECS = {"parse": parse_latency, "text": spec_text}


@dataclass(frozen=True)
class SimConfig(SchemeConfig):
    scheme_options = "options"  # (a class attribute: the `Scheme` attribute naming the scheme's options)
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
    timeline: bool = option(False, "record every forward (for the Chrome trace and timeline plot)")
    seed: int | None = option(0, "seed of the run's SeedSequence (one generator per random source)")
    # the scheme's own options: an instance of its `Scheme.options` dataclass (default: that dataclass's defaults)
    options: Any = field(default=None)

    @classmethod
    def from_text(cls, **values: Any) -> SimConfig:
        """A configuration from flat values as a config file holds them, spec fields as text ("12", "trace:F#P"):
        the edge for code and tests that write specs; the files they name are read here, once."""
        return cls.from_flat(parsed_values(cls, values))

    def with_text(self, **values: Any) -> SimConfig:
        """This configuration with flat `values` replaced, spec fields given as text (as for `from_text`)."""
        return self.with_values(**parsed_values(SimConfig, values))

    def __post_init__(self) -> None:
        for name in ("latency", "acceptance"):
            if any(isinstance(v, str) for v in getattr(self, name)):
                raise TypeError(f"SimConfig.{name} holds parsed models, not spec text: parse it at the edge "
                                "(SimConfig.from_text, parse_latency, parse_acceptance)")
        check_choices(self)  # the scheme first: the checks below depend on it
        self._check_options()
        scheme = self.scheme_info
        require(len(self.latency) >= 1, "--latency needs at least one model")
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
        require(len(set(self.names)) == len(self.names),
                f"--names must be distinct, got {' '.join(self.names)}")
        check_int("--num-tokens", self.num_tokens, 1)
        check_int("--prompt-len", self.prompt_len, 0)
        if self.trace_sequence is not None:
            check_int("--trace-sequence", self.trace_sequence, 0)
        check_int("--trace-position", self.trace_position, 0)
        check_int("--device-capacity", self.device_capacity, 1)
        require(self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
                f"--seed must be an integer >= 0, got {self.seed!r}")
        scheme.check_sim(self)
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
