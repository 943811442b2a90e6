"""sd: synchronous speculative decoding over a chain M_0 … M_k (k = 1: classic SD), γ drafts per round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import check_choices, option
from ..errors import MAX_WINDOW, check_int
from .base import RunOptions, Scheme, options_as

COORDINATION = ("lockfree", "reference")

if TYPE_CHECKING:
    import simpy

    from ..sim.config import SimConfig
    from ..sim.engine import Stage
    from ..sim.pairs import Pair
    from ..sim.plan import Inputs
    from ..validation.setups import Setup, Workload


@dataclass(frozen=True)
class SDOptions:
    gamma: int = option(8, "drafts per round (initial window for --schedule dynamic)")
    schedule: str = option("fixed", "the window: fixed, or dynamic (+2 after a full acceptance, -1 otherwise)",
                           choices=("fixed", "dynamic"))
    coordination: str = option(
        "lockfree", "whose synchronous chain: lockfree (ours) gives a drafter the verifier's bonus token; reference "
        "(the PipeSpec authors') lets the drafter draft that position itself", choices=COORDINATION)

    def __post_init__(self) -> None:
        check_choices(self)
        check_int("--gamma", self.gamma, 1, MAX_WINDOW)


@dataclass(frozen=True)
class SDRunOptions(RunOptions):
    gamma: int = option(5, "drafts per verification (initial window for --schedule dynamic)")
    schedule: str = option("fixed", "fixed, or dynamic (+2 after a full acceptance, -1 otherwise)",
                           choices=("fixed", "dynamic"))

    def __post_init__(self) -> None:
        check_choices(self)
        check_int("--gamma", self.gamma, 1, MAX_WINDOW)

    def decode_values(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "dynamic_window": self.schedule == "dynamic"}


class SD(Scheme):
    name = "sd"
    options = SDOptions
    run_options = SDRunOptions
    feature_drafts = True

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..schedule import Window
        from ..sim.schemes import sd_process

        options = options_as(SDOptions, config)
        windows = [Window(options.gamma, options.schedule == "dynamic") for _ in pairs]
        env.process(sd_process(env, stages, pairs, windows, config.num_tokens, done,
                               options.coordination == "reference"))

    def window_values(self, window: int | None) -> dict[str, Any]:
        return {"gamma": window}

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        from ..sim.plan import sd_seconds

        assert window is not None, "sd: a window γ"
        return sd_seconds(inputs, chain, window)

    def window_of(self, setup: Any) -> str:
        return str(setup.gamma)

    def drafts_scored(self, setup: Any, max_lead: int) -> int | None:
        return int(setup.gamma)

    def run_values(self, setup: Setup, workload: Workload) -> dict[str, Any]:
        return {**super().run_values(setup, workload), "gamma": setup.gamma}

    def decode_in_process(self) -> Any:
        from ..backend.engines import decode_sd

        return decode_sd


SCHEME = SD()
