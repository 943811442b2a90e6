"""ar: the target alone, one token per forward (the baseline every speedup is over)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Scheme

if TYPE_CHECKING:
    import simpy

    from ..latency import LatencyModel
    from ..sim.config import SimConfig
    from ..sim.engine import Stage
    from ..sim.pairs import Pair
    from ..sim.plan import Inputs


class AR(Scheme):
    name = "ar"
    min_models = 1
    target_only = True
    baseline = True

    def sim_pairs(self, config: SimConfig) -> int:
        return 0

    def sim_stage_devices(self, config: SimConfig) -> int:
        return 1

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        return [(config.model_names[-1], config.latency[-1])]

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.schemes import ar_process

        env.process(ar_process(env, stages[0], config.num_tokens, done))

    def window_label(self, window: int | None) -> str:
        return "-"

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        return inputs.t(chain[-1], 1)

    def window_of(self, setup: Any) -> str:
        return "-"

    def drafts_scored(self, setup: Any, max_lead: int) -> int | None:
        return None

    def decode_in_process(self) -> Any:
        from ..backend.engines import decode_ar

        return decode_ar


SCHEME = AR()
