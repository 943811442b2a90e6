"""The scheme table: a scheme is one module plus one registration, and the CLI, the simulator, sweeps and the
closed forms find it there with no other edit."""

import json
import subprocess
import sys
import textwrap

import pytest

from pipespec import schemes

NEW_SCHEME = '''
"""sd1: a synchronous chain that verifies every draft at once (a window of 1, whatever --gamma says)."""

from pipespec.schemes.sd import SD


class SDOne(SD):
    name = "sd1"

    def start(self, config, env, stages, pairs, done):
        super().start(config.with_values(gamma=1, schedule="fixed"), env, stages, pairs, done)

    def closed_form_s(self, inputs, chain, window):
        return super().closed_form_s(inputs, chain, 1)


SCHEME = SDOne()
'''

CAPPED_SCHEME = '''
"""sdcap: synchronous SD whose window is capped by an option of its own, --cap."""

from dataclasses import dataclass

from pipespec.config import option
from pipespec.errors import check_int
from pipespec.schemes.sd import SD, SDOptions


@dataclass(frozen=True)
class CappedOptions(SDOptions):
    cap: int = option(2, "the most drafts a round proposes, whatever --gamma says")

    def __post_init__(self):
        super().__post_init__()
        check_int("--cap", self.cap, 1)


class Capped(SD):
    name = "sdcap"
    options = CappedOptions

    def start(self, config, env, stages, pairs, done):
        gamma = min(config.options.gamma, config.options.cap)
        super().start(config.with_values(scheme="sd", gamma=gamma), env, stages, pairs, done)


SCHEME = Capped()
'''

DRIVER = '''
import json, sys
from pipespec.schemes import register
import sd1, sdcap
register(sd1.SCHEME)
register(sdcap.SCHEME)
from pipespec.cli import main
from pipespec.schemes import get
from pipespec.sim.plan import Inputs
from pipespec.latency import ConstantLatency
from pipespec.acceptance import Bernoulli

inputs = Inputs({"d": ConstantLatency(0.01), "t": ConstantLatency(0.1)}, {("d", "t"): Bernoulli(0.8)}, "t", {})
print(json.dumps({"closed": [get(s).closed_form_s(inputs, ("d", "t"), w) for s, w in (("sd1", 8), ("sd", 1))]}))
sys.exit(main(sys.argv[1:]))
'''


def _run(tmp_path, *args, code=0):
    (tmp_path / "sd1.py").write_text(textwrap.dedent(NEW_SCHEME))
    (tmp_path / "sdcap.py").write_text(textwrap.dedent(CAPPED_SCHEME))
    (tmp_path / "driver.py").write_text(DRIVER)
    done = subprocess.run([sys.executable, str(tmp_path / "driver.py"), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == code and "Traceback" not in done.stderr, done.stderr
    if code:
        return done.stderr
    first, _, rest = done.stdout.partition("\n")
    return json.loads(first), rest


def _simulate(run_cli, scheme, gamma):
    code, out, err = run_cli("simulate", "--scheme", scheme, "--latency", "10", "100", "--acceptance", "0.8",
                             "--gamma", str(gamma), "--num-tokens", "300", "--json")
    assert code == 0, err
    return json.loads(out)["results"]


def test_a_new_scheme_is_one_module_and_one_registration(run_cli, tmp_path):
    """sd1 (a module of its own, registered once) runs through `pipespec simulate` and the closed forms: it
    computes what sd with γ = 1 computes, and not what sd with its --gamma would."""
    closed, out = _run(tmp_path, "simulate", "--scheme", "sd1", "--latency", "10", "100", "--acceptance", "0.8",
                       "--gamma", "8", "--num-tokens", "300", "--json")
    assert closed["closed"][0] == pytest.approx(closed["closed"][1])
    mine = json.loads(out)["results"]
    assert mine["scheme"] == "sd1"
    one, eight = _simulate(run_cli, "sd", 1), _simulate(run_cli, "sd", 8)
    assert mine["ms_per_token"] == pytest.approx(one["ms_per_token"])
    assert mine["ms_per_token"] != pytest.approx(eight["ms_per_token"], rel=0.01)
    assert mine["stages"] == one["stages"]


def test_a_new_schemes_own_option_is_a_flag_and_refused_elsewhere(run_cli, tmp_path):
    """sdcap's options dataclass, declared in its module alone, gives `pipespec simulate` a --cap flag (its help
    led by the scheme's name) that reaches the run; given to another scheme, or out of range, it is a one-line
    error."""
    _, usage = _run(tmp_path, "simulate", "--help")
    assert "sdcap: the most drafts a round proposes" in " ".join(usage.split())
    args = ("--latency", "10", "100", "--acceptance", "0.8", "--num-tokens", "300", "--json")
    capped = json.loads(_run(tmp_path, "simulate", "--scheme", "sdcap", "--gamma", "8", "--cap", "3", *args)[1])
    assert capped["config"]["cap"] == 3 and capped["config"]["gamma"] == 8
    assert capped["results"]["ms_per_token"] == pytest.approx(_simulate(run_cli, "sd", 3)["ms_per_token"])
    assert capped["results"]["ms_per_token"] != pytest.approx(_simulate(run_cli, "sd", 8)["ms_per_token"], rel=0.01)
    error = _run(tmp_path, "simulate", "--scheme", "sd", "--cap", "3", *args, code=2)
    assert "--cap applies to sdcap, not sd" in error and len(error.strip().splitlines()) == 1
    error = _run(tmp_path, "simulate", "--scheme", "sdcap", "--cap", "0", *args, code=2)
    assert "--cap must be an integer >= 1" in error


def test_registering_late_or_twice_is_refused():
    """After the configuration modules have read the table (they have, in this test process), or under a
    name already taken, a registration would be silently ignored: it is an error instead."""
    with pytest.raises(RuntimeError, match="register"):
        schemes.register(schemes.get("sd"))
