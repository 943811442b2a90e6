"""sd: synchronous speculative decoding over a chain M_0 … M_k (k = 1: classic SD), γ drafts per round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Scheme

if TYPE_CHECKING:
    import simpy

    from ..sim.config import SimConfig
    from ..sim.engine import Stage
    from ..sim.pairs import Pair
    from ..sim.plan import Inputs


class SD(Scheme):
    name = "sd"

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..schedule import Window
        from ..sim.schemes import sd_process

        windows = [Window(config.gamma, config.schedule == "dynamic") for _ in pairs]
        env.process(sd_process(env, stages, pairs, windows, config.num_tokens, done,
                               config.coordination == "reference"))

    def window_values(self, window: int | None) -> dict[str, Any]:
        return {"gamma": window}

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        from ..sim.plan import sd_seconds

        assert window is not None, "sd: a window γ"
        return sd_seconds(inputs, chain, window)

    def window_of(self, setup: Any) -> str:
        return str(setup.gamma)

    def decode_in_process(self) -> Any:
        from ..backend.engines import decode_sd

        return decode_sd


SCHEME = SD()
