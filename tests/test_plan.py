"""`pipespec plan`: enumeration, closed-form pruning, simulated finalists and one-line errors."""

import json

import pytest

from pipespec.commands.plan import PlanConfig, resolve_inputs
from pipespec.latency import ConstantLatency
from pipespec.profiles import write_profiles
from pipespec.sim import plan
from pipespec.sim.run import simulate
from pipespec.theory import timing


def _profile(path, latencies_ms, tokenizers=None, devices=None):
    models = {}
    for name, ms in latencies_ms.items():
        points = [{"num_tokens": n, "context_len": 0, "median_s": ms / 1e3 * (1 + 0.01 * (n - 1))} for n in (1, 64)]
        models[name] = {"points": points, **({"tokenizer": tokenizers[name]} if tokenizers else {}),
                        **({"device": devices[name]} if devices else {})}
    write_profiles(path, models)
    return str(path)


def test_groupings_and_devices():
    assert plan._groupings(1) == [(0,)]
    assert len(plan._groupings(3)) == 4 and (0, 1, 2) in plan._groupings(3) and (0, 0, 0) in plan._groupings(3)
    assert plan._devices_used(("a", "b", "t"), (0, 0, 1), {"t": 2}) == 3
    assert plan._devices_used(("a", "b", "t"), (0, 0, 0), {"t": 2}) == 2


def test_pipespec_closed_form_uses_the_window_the_drafter_fills():
    """A drafter 10x faster than the verifier fills 10 drafts per verification (t(n) constant here)."""
    latency = {"d": ConstantLatency(0.01), "t": ConstantLatency(0.1)}
    inputs = plan.Inputs(latency, {("d", "t"): _Alpha(0.8)}, "t", {})
    seconds, gamma = plan.pipespec_seconds(inputs, ("d", "t"), None)
    assert gamma == 10
    assert seconds == pytest.approx(float(timing.pipeline_time(0.8, 10, 0.1, 0.1)))
    assert plan.pipespec_seconds(inputs, ("d", "t"), 4)[1] == 4


class _Alpha:
    def __init__(self, alpha):
        self.alpha = alpha

    def mean_alpha(self):
        return self.alpha


def test_plan_ranks_by_the_simulator_and_matches_simulate(run_cli, tmp_path):
    profile = _profile(tmp_path / "p.json", {"small": 5, "mid": 20, "big": 100})
    code, out, err = run_cli("plan", "--profile", profile, "--acceptance", "small->mid=0.8", "mid->big=0.9",
                             "small->big=0.7", "--finalists", "4", "--seeds", "2", "--num-tokens", "400",
                             "--plot", str(tmp_path / "depth.png"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    results = doc["results"]
    assert results["target"] == "big" and results["devices"] == 3
    rows = results["finalists"]
    ms = [r["sim_ms_per_token"] for r in rows]
    assert ms == sorted(ms)
    assert {r["depth"] for r in rows} == {1, 2, 3}  # the best of every depth is simulated
    ar = next(r for r in rows if r["scheme"] == "ar")
    assert ar["sim_ms_per_token"] == pytest.approx(100.0) and ar["sim_speedup"] == pytest.approx(1.0)
    assert rows[0]["sim_speedup"] > 1.5  # α = 0.9 behind a 5x cheaper draft pays
    assert (tmp_path / "depth.png").stat().st_size > 0
    # the finalist's simulated figure is what `simulate` gives for the same configuration
    best = rows[0]
    chain = best["chain"].split(" -> ")
    inputs, _ = resolve_inputs(PlanConfig(profile=(profile,),
                                          acceptance=("small->mid=0.8", "mid->big=0.9", "small->big=0.7")))
    window = None if best["window"] == "all" else int(best["window"])
    candidate = plan.Candidate(best["scheme"], tuple(chain), window, tuple(range(len(chain))), 0, 0.0)
    runs = [simulate(plan.sim_config(inputs, candidate, 400, s), with_ar_baseline=False) for s in range(2)]
    per_token = sorted(r.elapsed_s / r.num_tokens for r in runs)[1]
    assert best["sim_ms_per_token"] == pytest.approx(per_token * 1e3)


def test_preset_a100_prefers_the_pipeline(run_cli):
    code, out, err = run_cli("plan", "--preset", "a100", "--devices", "4", "--finalists", "3", "--seeds", "1",
                             "--num-tokens", "300", "--json")
    assert code == 0, err
    rows = json.loads(out)["results"]["finalists"]
    assert rows[0]["scheme"] == "pipespec" and rows[0]["sim_speedup"] > 1.3
    assert any("M0->M2" in note for note in json.loads(out)["results"]["notes"])


@pytest.mark.parametrize("args, message", [
    (("--preset", "a100", "--devices", "2", "--depth", "3"), "--depth 3: 3 stages on devices of their own need"),
    (("--profile", "missing.json"), "latency profile 'missing.json' does not exist"),
    (("--preset", "a100", "--models", "M0", "M7"), "--models: no latency profile for 'M7'"),
    (("--preset", "a100", "--devices", "1"), "--devices 1: the target M2 alone needs 2"),
    (("--preset", "a100", "--max-drafts", "0"), "--max-drafts: each must be 'all' or an integer >= 1"),
    (("--preset", "a100", "--device-count", "M9=2"), "--device-count: no profile for model 'M9'"),
    ((), "--profile: give at least one latency-profile file"),
])
def test_impossible_plans_are_one_line_errors(run_cli, args, message):
    code, _, err = run_cli("plan", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_mismatched_tokenizers(run_cli, tmp_path):
    profile = _profile(tmp_path / "p.json", {"a": 5, "b": 50}, tokenizers={"a": "x", "b": "y"})
    code, _, err = run_cli("plan", "--profile", profile, "--models", "a", "b", "--acceptance", "a->b=0.8")
    assert code == 2 and "do not share a tokenizer" in err
    code, out, err = run_cli("plan", "--profile", profile, "--acceptance", "a->b=0.8", "--seeds", "1")
    assert code == 0 and "a left out: its tokenizer differs" in out


def test_the_target_is_the_slowest_model_whatever_the_order_of_the_acceptance_items(tmp_path):
    from pipespec.commands.plan import PlanConfig, resolve_inputs

    profile = _profile(tmp_path / "p.json", {"small": 5, "mid": 20, "big": 100})
    # an item naming another pair last once renamed the target after that pair's verifier
    inputs, _ = resolve_inputs(PlanConfig(profile=(profile,), acceptance=("mid->big=0.9", "small->mid=0.8")))
    assert inputs.target == "big"


def test_a_model_profiled_on_a_device_group_needs_the_whole_group(tmp_path):
    """`pipespec profile --device cuda:0,cuda:1` records the group: planning counts both devices for that model
    (one stage), and --device-count still overrides it."""
    from pipespec.commands.plan import PlanConfig, resolve_inputs

    devices = {"small": "cpu", "mid": "cuda:0", "big": "cuda:1,cuda:2,cuda:3"}
    profile = _profile(tmp_path / "p.json", {"small": 5, "mid": 20, "big": 100}, devices=devices)
    grouped, _ = resolve_inputs(PlanConfig(profile=(profile,), acceptance=("mid->big=0.9",)))
    assert dict(grouped.device_needs) == {"small": 1, "mid": 1, "big": 3}
    ranked = plan.enumerate_candidates(grouped, (2,), 4, (4,), [None], False)
    assert ranked and all(c.devices_used == 4 for c in ranked)  # mid on one device, big on the group of three
    assert not plan.enumerate_candidates(grouped, (2,), 3, (4,), [None], False)  # 3 devices do not fit them
    given, _ = resolve_inputs(PlanConfig(profile=(profile,), acceptance=("mid->big=0.9",), device_count=("big=2",)))
    assert given.device_needs["big"] == 2
    from pipespec.profiles import devices_needed  # an imported log's GPUs count too; a description does not

    assert devices_needed({"devices": ["cuda:1", "cuda:2"]}) == 2 and devices_needed({"device": "2x A100"}) is None
