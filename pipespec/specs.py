"""Latency and acceptance values as users write them (`--latency 12 affine:1,2,0 profile:FILE#M`,
`--acceptance 0.8 trace:FILE#PAIR`), parsed once at the edge: the CLI, config files, sweep grids and presets
turn the text into typed models (`latency.parse_latency`, `acceptance.parse_acceptance`), configurations hold
those models and read no file, and a result records each model's `spec_text`: the text it was parsed from.
"""

from __future__ import annotations

from .acceptance import Acceptance, Bernoulli, Markov, Positional
from .latency import AffineLatency, ConstantLatency, LatencyModel, ProfileLatency


def spec_text(model: LatencyModel | Acceptance, digits: int = 12) -> str:
    """What a result records for a model: the spec it was parsed from; for one built in code, its spec in the
    same grammar where there is one (constant, affine, α, pos, markov; numbers to `digits` significant digits),
    else its description."""
    text = getattr(model, "spec", "")
    if text:
        return text

    def _number(x: float) -> str:
        return format(x, f".{digits}g")

    if isinstance(model, ConstantLatency):
        return _number(model.latency_s * 1e3)
    if isinstance(model, AffineLatency):
        return "affine:" + ",".join(_number(x * 1e3) for x in (model.base_s, model.per_token_s, model.per_context_s))
    if isinstance(model, Bernoulli):
        return _number(model.alpha)
    if isinstance(model, Positional):
        return "pos:" + ",".join(_number(a) for a in model.alphas)
    if isinstance(model, Markov):
        return f"markov:{_number(model.p11)},{_number(model.p01)}"
    if isinstance(model, ProfileLatency):
        return f"profile({model.name}, {len(model.points)} points)"
    describe = getattr(model, "describe", None)
    return describe() if describe else repr(model)
