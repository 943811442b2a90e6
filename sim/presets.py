"""Named simulator configurations: the one table of presets (`pipespec simulate --preset NAME`)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import require
from . import calibration
from .config import SimConfig


def _calibrated(scheme: str, **overrides: object) -> SimConfig:
    acceptance = calibration.acceptance_models()
    values = {"scheme": scheme, "latency": tuple(calibration.latency_models().values()),
              "acceptance": (acceptance["M0->M1"], acceptance["M1->M2"]),
              "names": ("Llama-3.2-1B", "Llama-3.1-8B", "Llama-3.1-70B-NF4"),
              "num_tokens": 2000, "prompt_len": 128}
    values.update(overrides)
    return SimConfig.from_flat(values)


PRESETS: dict[str, tuple[str, Callable[[], SimConfig]]] = {
    "pipespec-a100": ("PipeSpec {1B, 8B, 70B-NF4} on 4x A100, calibrated from the authors' HumanEval runs",
                      lambda: _calibrated("pipespec", max_drafts=calibration.MAX_DRAFTS)),
    "sd-a100": ("synchronous chain {1B, 8B, 70B-NF4}, lookahead 8, same calibration",
                lambda: _calibrated("sd", gamma=8)),
    "toy": ("the PipeSpec paper's toy setting: M0/M1/M2 at 10/5/1 tokens per unit time (1 unit = 1 s)",
            lambda: SimConfig.from_text(scheme="pipespec", latency=("100", "200", "1000"), acceptance=("0.8",),
                                        num_tokens=200, prompt_len=0)),
}


def preset(name: str) -> SimConfig:
    require(name in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name][1]()
