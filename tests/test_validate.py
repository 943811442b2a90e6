"""`pipespec validate`: predictions from profiles and traces alone, and the measured end-to-end run."""

import json

import pytest

from pipespec.profiles import write_profiles
from pipespec.traces import write_traces
from pipespec.validation.predict import planning_inputs, predict
from pipespec.validation.setups import Setup, Workload, builtin_setups


def _inputs(tmp_path, setup, draft_ms=10.0, target_ms=40.0, bits=None):
    points = lambda ms: [{"num_tokens": n, "context_len": 0, "median_s": ms / 1e3 * (1 + 0.05 * (n - 1))}  # noqa: E731
                         for n in (1, 2, 4, 8, 16, 33)]
    keys = setup.profile_keys()
    write_profiles(tmp_path / "p.json", {keys[0]: {"points": points(draft_ms)},
                                         keys[-1]: {"points": points(target_ms)}})
    return planning_inputs(setup, tmp_path / "p.json", _traces(tmp_path, setup, bits), {}, context=0)


def _traces(tmp_path, setup, bits=None):
    sequences = bits or [[1, 1, 1, 0] * 25]
    write_traces(tmp_path / "t.json", {f"{setup.chain[0]}->{setup.chain[-1]}": {"sequences": sequences}})
    return tmp_path / "t.json"


def test_ar_prediction_is_the_profiled_single_token_forward(tmp_path):
    setup = Setup("sd", "sd", ("a", "b"), (2,), gamma=3)
    inputs = _inputs(tmp_path, setup)
    ar = predict(Setup("ar", "ar", ("b",), (2,)), inputs, Workload(), prompts=[(0, 200)], seeds=1)
    assert ar["sim_ms_per_token"] == pytest.approx(40.0) and ar["closed_ms_per_token"] == pytest.approx(40.0)


def test_sd_prediction_follows_the_trace(tmp_path):
    """Trace 1110 repeated, γ = 3: the replayed trace accepts every window of 3 (the 0 falls on the
    verifier's own bonus token), so each round adds 4 tokens; the closed form, assuming i.i.d. α = 0.75,
    expects fewer — this is what trace replay is for."""
    setup = Setup("sd", "sd", ("a", "b"), (2,), gamma=3)
    inputs = _inputs(tmp_path, setup, draft_ms=2.0)
    got = predict(setup, inputs, Workload(), prompts=[(0, 400)], seeds=2)
    assert got["trace_alpha"] == {"a@2t->b@2t": pytest.approx(0.75)}
    assert got["sim_ms_per_token"] < 40.0 and got["closed_ms_per_token"] < 40.0
    # one round = 3 drafts (6 ms) + verify 4 tokens (46 ms) and yields 4 tokens: 13 ms/token
    assert got["sim_ms_per_token"] == pytest.approx(13.0, rel=0.03)
    assert got["closed_ms_per_token"] > 1.3 * got["sim_ms_per_token"]


def test_pipespec_shares_a_core_between_pinned_stages(tmp_path):
    shared = Setup("k", "pipespec", ("a", "b"), (1, 1), ("0", "0"))
    apart = Setup("k", "pipespec", ("a", "b"), (1, 1), ("0", "1"))
    one_core = predict(shared, _inputs(tmp_path, shared), Workload(), [(0, 300)], 1)["sim_ms_per_token"]
    two_cores = predict(apart, _inputs(tmp_path, apart), Workload(), [(0, 300)], 1)["sim_ms_per_token"]
    assert two_cores < one_core


def test_a_stage_is_profiled_beside_the_model_on_the_other_core():
    setups = {s.name: s for s in builtin_setups(4, "draft:x", ppsd_exits=(16,), specpipe_widths=(2,))}
    assert setups["pipespec-k2-ngram"].profile_keys() == ("ngram", "smollm2@1t-alone")
    assert setups["pipespec-k2-int8"].profile_keys() == ("smollm2-int8@1t", "smollm2@1t~smollm2-int8")
    assert setups["pipespec-k3"].profile_keys() == ("ngram", "smollm2-int8@1t", "smollm2@1t~smollm2-int8")
    assert setups["pipespec-k3-x"].profile_keys() == ("draft:x@1t", "smollm2-int8@1t", "smollm2@1t~smollm2-int8")
    assert setups["ppsd-exit16"].profile_keys() == ("smollm2-exit:16@1t", "smollm2@1t")
    assert setups["specpipe-p2-w2"].profile_keys() == ("smollm2-int8@1t", "smollm2@1t")
    assert setups["specpipe-p2-w2"].process_keys() == ("smollm2-int8@1t[tree]", "smollm2@1t[tree 0-14]",
                                                       "smollm2@1t[tree 15-29]")
    # plain pipeline parallelism forwards one stage at a time, and never its draft
    assert setups["pp-p2"].profile_keys() == ("smollm2-int8@1t", "smollm2@1t-alone")
    assert setups["pp-p2"].process_keys() == ("smollm2@1t-alone[tree 0-14]", "smollm2@1t-alone[tree 15-29]")
    assert setups["sd-ngram"].profile_keys() == ("ngram", "smollm2@2t")


def test_builtin_setups():
    names = [s.name for s in builtin_setups(4, "draft:x", (2, 4))]
    assert names[0] == "ar" and len(names) == len(set(names))
    assert {"pipespec-k2-int8", "pipespec-k3", "sd-x", "pipespec-k2-x", "sd-int8-g2",
            "pipespec-k2-int8-max4"} <= set(names)


def test_validate_includes_the_committed_feature_draft_in_sd_and_a_two_stage_pipeline():
    from pipespec.commands.validate import built_drafts

    assert built_drafts("eagle") == ["draft:smollm2-eagle2"]
    names = {s.name for s in builtin_setups(4, "draft:smollm2-chat4", feature_drafts=built_drafts("eagle"))}
    assert {"sd-smollm2-eagle2", "pipespec-k2-smollm2-eagle2", "pipespec-k3-smollm2-chat4"} <= names
    assert "pipespec-k3-smollm2-eagle2" not in names  # it drafts for the target only


@pytest.mark.parametrize("args, message", [
    (("--repeats", "0"), "--repeats must be"),
    (("--configs", "nope"), "--configs: unknown configuration 'nope'"),
    (("--draft", "draft:missing"), "missing"),
    (("--device", "tpu"), "--device: unknown device"),
    (("--repredict",), "--repredict: "),
])
def test_bad_input_is_one_line(run_cli, tmp_path, args, message):
    code, _, err = run_cli("validate", "--out", str(tmp_path), "--draft", "none", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_validate_end_to_end(run_cli, tmp_path):
    """Every scheme's configurations measured, predicted and predicted again from what the run left: on a tiny
    family (the path is the built-in's; its models cost milliseconds)."""
    family = ["--target", "tiny:1:4:32", "--draft", "tiny:2:1:32", "--ppsd-exits", "2", "--specpipe-widths", "2"]
    configs = ["sd", "pipespec-k2", "ppsd-exit2", "specpipe-p2-w2", "pp-p2"]
    code, out, err = run_cli("validate", *family, "--configs", *configs, "--limit", "1", "--max-new-tokens", "12",
                             "--repeats", "1", "--seeds", "1", "--out", str(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = doc["results"]["rows"]
    assert [r["config"] for r in rows] == ["ar", *configs]
    _check_rows(rows)
    assert doc["results"]["wall_time_s"] > 0 and doc["results"]["peak_rss_mib"] > 0
    for name in ("validate.csv", "validate.md", "validate.png", "validate.json", "profile.json", "traces.json",
                 "accepted_histogram.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # predicted again from what the run left, without measuring: the same measurements and predictions
    code, out, err = run_cli("validate", *family, "--configs", *configs, "--limit", "1", "--max-new-tokens", "12",
                             "--repeats", "1", "--seeds", "1", "--out", str(tmp_path), "--json", "--repredict")
    assert code == 0, err
    redone = json.loads(out)["results"]
    assert redone["measurement_run"]["wall_time_s"] == pytest.approx(doc["results"]["wall_time_s"])
    again = redone["rows"]
    for before, after in zip(rows, again, strict=True):
        assert after["lossless"] == before["lossless"]
        for key in ("measured_ms_per_token", "repeats_ms_per_token", "sim_ms_per_token", "sim_error"):
            assert after[key] == pytest.approx(before[key]), (before["config"], key)
    # what the run measured (prompts, limit, tokens, configurations, exits, widths) is read from the run itself
    code, out, err = run_cli("validate", *family, "--seeds", "1", "--out", str(tmp_path), "--json", "--repredict")
    assert code == 0, err
    recorded = json.loads(out)
    assert recorded["config"]["configs"] == configs and recorded["config"]["max_new_tokens"] == 12
    for before, after in zip(again, recorded["results"]["rows"], strict=True):
        assert after["config"] == before["config"] and after["sim_ms_per_token"] == before["sim_ms_per_token"]
    for args, message in ((["--configs", "sd-g2", "--lookahead", "2", "--max-new-tokens", "12"],
                           "has no measurement of sd-g2"),
                          (["--configs", *configs, "--max-new-tokens", "16"], "measured --max-new-tokens 12, not 16")):
        code, _, err = run_cli("validate", *family, *args, "--limit", "1", "--out", str(tmp_path), "--repredict")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_validate_on_the_built_in_family(run_cli, tmp_path):
    """The built-in target, its int8 self-draft as a pinned pipeline stage profiled beside it, the n-gram drafter,
    and a lookahead sweep that measured one scheme only (its plot has the other scheme's line left out)."""
    configs = ["sd-ngram", "pipespec-k2-int8-max2"]
    code, out, err = run_cli("validate", "--configs", *configs, "--lookahead", "2", "--gamma", "2", "--limit", "1",
                             "--max-new-tokens", "12", "--repeats", "1", "--seeds", "1", "--draft", "none",
                             "--out", str(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = doc["results"]["rows"]
    assert [r["config"] for r in rows] == ["ar", *configs]
    _check_rows(rows)
    profile = json.loads((tmp_path / "profile.json").read_text())["models"]
    assert profile["smollm2@1t~smollm2-int8"]["co_runner"] == "smollm2-int8 forwards on core 1 (profiled on core 0)"
    # profiled as far as these configurations verify (γ = 2, at most 2 drafts): 3 tokens, not the lead's 33
    assert {p["num_tokens"] for p in profile["smollm2@2t"]["points"]} == {1, 2, 3}
    assert (tmp_path / "lookahead.png").stat().st_size > 0


def _check_rows(rows: list[dict]) -> None:
    for row in rows:
        assert row["lossless"] and row["measured_ms_per_token"] > 0 and row["sim_ms_per_token"] > 0
        # the error itself depends on the machine's load (accuracy is validate's report, not a test): it must
        # be the ratio of the two figures the row reports
        assert row["sim_error"] == row["sim_ms_per_token"] / row["measured_ms_per_token"] - 1


@pytest.mark.slow
def test_the_co_runner_runs_only_inside_its_block():
    import multiprocessing

    from pipespec.backend.profiler import co_runner

    with co_runner("tiny:1:1:64", core=0):
        running = [p for p in multiprocessing.active_children() if p.name == "pipespec-co-runner"]
        assert len(running) == 1 and running[0].is_alive()
    assert not [p for p in multiprocessing.active_children() if p.name == "pipespec-co-runner"]
    with pytest.raises(RuntimeError), co_runner("tiny:1:1:64", core=0):
        raise RuntimeError("the block fails")
    assert not [p for p in multiprocessing.active_children() if p.name == "pipespec-co-runner"]


def test_depth_setups_give_every_process_a_device_of_its_own():
    from pipespec.validation.depth import depth_setups, two_core_setups

    setups = {s.name: s for s in depth_setups((2, 8))}
    assert set(setups) >= {"pp-p8", "specpipe-p8-w1", "specpipe-p8-w2", "ppsd-exit16-p8", "ppsd-exit8-p2"}
    assert setups["specpipe-p8-w2"].cpus == tuple(str(i) for i in range(9)) and setups["pp-p8"].tree_depth == 1
    assert setups["ppsd-exit8-p8"].pp_stages == 8
    assert [s.cpus for s in two_core_setups()][-1] == ("0", "0", "1", "0", "1")


@pytest.mark.parametrize("args, message", [([], "has no profile.json"), (["--depths", "1"], "--depths must be")])
def test_depth_rejects_bad_input_in_one_line(tmp_path, capsys, args, message):
    from pipespec.validation.depth import main

    if args:
        (tmp_path / "profile.json").write_text("{}")
        (tmp_path / "traces.json").write_text("{}")
    assert main([str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_profile_rounds_run_between_rounds_of_measurements(tmp_path, monkeypatch):
    """Each round of measurements follows a round of the profile, and the profile's points are medians
    over every round's passes (at least PROFILE_PASSES in all)."""
    from pipespec.profiles import read_profiles
    from pipespec.validation import backend
    from pipespec.validation.profiling import PROFILE_PASSES, Profiling

    setups = [Setup("ar", "ar", ("tiny:1:1:32",), (1,)), Setup("sd", "sd", ("ngram", "tiny:1:1:32"), (1,))]
    workload = Workload(repeats=3, max_new_tokens=4, max_lead=4, encoded=[[1, 2, 3, 1, 2], [4, 5, 6]])
    events = []
    profiling = Profiling(setups, workload, rounds=workload.repeats)
    real_round = profiling.round
    monkeypatch.setattr(profiling, "round", lambda progress: (events.append("profile"), real_round(progress)))
    monkeypatch.setattr(backend, "measure_once", lambda setup, workload: events.append(setup.name) or
                        {"decode_ms_per_token": 1.0, "ms_per_token": 1.0, "outputs": []})
    backend.measure_interleaved(setups, workload, lambda it, **_: it, profiling)
    assert events == ["profile", "ar", "sd"] * 3
    profiling.write(tmp_path / "p.json")
    written = read_profiles(tmp_path / "p.json")
    assert set(written) == {"tiny:1:1:32@1t-alone"} and written["tiny:1:1:32@1t-alone"]["rounds"] == 3
    passes = {len(t) for t in profiling.profilers["tiny:1:1:32@1t-alone"].times_s.values()}
    assert passes == {3 * profiling.passes_per_round} and 3 * profiling.passes_per_round >= PROFILE_PASSES
    assert profiling.ngram_s["ngram"] > 0


def test_specpipe_processes_are_profiled_as_they_run(tmp_path):
    """The draft's tree forward and each target stage's layers get profiles of their own, at one to
    tree-width nodes per level, and every pass leaves each tree's cache at its context."""
    from pipespec.profiles import read_profiles
    from pipespec.validation.profiling import Profiling

    specpipe = Setup("sp", "specpipe", ("tiny:2:2:32", "tiny:1:4:32"), (1, 1, 1), ("0", "0", "1"), tree_width=2)
    setups = [Setup("ar", "ar", ("tiny:1:4:32",), (1,)), specpipe]
    workload = Workload(repeats=1, max_new_tokens=4, max_lead=4, encoded=[[1, 2, 3, 1, 2], [4, 5, 6]], contended=False)
    profiling = Profiling(setups, workload)
    profiling.round(lambda it, **_: it)
    profiling.write(tmp_path / "p.json")
    assert specpipe.process_keys() == ("tiny:2:2:32@1t~tiny:1:4:32[tree]", "tiny:1:4:32@1t~tiny:1:4:32[tree 0-1]",
                                       "tiny:1:4:32@1t~tiny:1:4:32[tree 2-3]")
    written = read_profiles(tmp_path / "p.json")
    for key in specpipe.process_keys():
        assert {p.num_tokens for p in written[key]["points"]} == {1, 2}
        slices = profiling.profilers[key].forward.slices
        assert all(tree.length == ctx for ctx, tree in slices.items())


def test_specpipe_stages_are_priced_as_profiled_when_they_were(tmp_path):
    """With the processes' own profiles the simulator prices each stage by them (here 1.5x the layers'
    share), not by the whole target's forward; a run without them keeps the share."""
    setup = Setup("sp", "specpipe", ("tiny:2:2:32", "tiny:1:4:32"), (1, 1, 1), ("0", "0", "1"))
    flat = lambda ms: [{"num_tokens": n, "context_len": 0, "median_s": ms / 1e3} for n in (1, 2)]  # noqa: E731
    draft_key, target_key = setup.profile_keys()
    models = {draft_key: {"points": flat(20)}, target_key: {"points": flat(40)}}
    write_profiles(tmp_path / "share.json", models)
    share = planning_inputs(setup, tmp_path / "share.json", _traces(tmp_path, setup), {}, context=0)
    stage = 40 * 1.5 / 2
    parts = dict(zip(setup.process_keys(), (flat(20), flat(stage), flat(stage)), strict=True))
    write_profiles(tmp_path / "timed.json", {**models, **{k: {"points": v} for k, v in parts.items()}})
    timed = planning_inputs(setup, tmp_path / "timed.json", _traces(tmp_path, setup), {}, context=0)
    got_share = predict(setup, share, Workload(), [(0, 200)], 1)
    got_timed = predict(setup, timed, Workload(), [(0, 200)], 1)
    assert got_timed["sim_ms_per_token"] > got_share["sim_ms_per_token"]
    busy = {s["name"]: s["busy_s"] / s["steps"] for s in got_timed["sim_stages"] if s["steps"]}
    assert busy["tiny:1:4:32[stage 1]"] == pytest.approx(stage / 1e3)  # on core 1 alone: its profile exactly


def test_profile_keys_have_one_grammar_written_and_parsed_in_one_place():
    from pipespec.profiles import ProfileKey

    keys = {k for s in builtin_setups(4, "draft:smollm2-small4", (2,), (8,), (1, 2)) for k in s.profile_keys()}
    keys |= {"70B@nf4x2", "ngram", "tiny:1:4:32@1t~tiny:1:4:32[tree 0-1]"}
    assert all(str(ProfileKey.parse(k)) == k for k in keys)
    assert ProfileKey.parse("smollm2@1t~draft:smollm2-small4") == ProfileKey("smollm2", 1, "draft:smollm2-small4")
    assert ProfileKey.parse("smollm2-int8@1t-alone").neighbour == "alone"
    assert ProfileKey.parse("70B@nf4x2") == ProfileKey("70B", dtype="nf4", devices=2)
    assert ProfileKey.parse("tiny:1:4:32@1t~tiny:1:4:32[tree 0-1]").part == "tree 0-1"
    assert ProfileKey.parse("M0").model == "M0"


def test_stages_share_the_gpu_and_pinned_cores_on_the_cpu():
    from pipespec.validation.predict import layer_stage_devices, stage_groups
    from pipespec.validation.setups import Setup, Workload

    pinned = Setup("k3", "pipespec", ("ngram", "a", "b"), (1, 1, 1), ("0", "0", "1"))
    unpinned = Setup("k2", "pipespec", ("a", "b"), (1, 1))
    cpu, gpu = Workload(device="cpu"), Workload(device="cuda:0")
    assert stage_groups(pinned, cpu) == (2, 0, 1)  # the model-free stage on a device of its own
    assert stage_groups(unpinned, cpu) == (0, 1)
    assert stage_groups(unpinned, gpu) == (0, 0)
    assert stage_groups(pinned, gpu) == (1, 0, 0)
    tree = Setup("sp", "specpipe", ("a", "b"), (1, 1, 1), ("0", "0", "1"))
    assert layer_stage_devices(tree, cpu, 3) == ("cpu0", "cpu0", "cpu1")
    assert layer_stage_devices(tree, gpu, 3) == ("cuda:0",) * 3
    assert layer_stage_devices(Setup("sp", "specpipe", ("a", "b"), (1, 1, 1)), cpu, 3) == ()


def test_a_tiny_models_exit_is_its_first_layers():
    import torch

    from pipespec.backend.loading import load_model
    from pipespec.backend.models import num_layers, resolve, vocab_size

    ref = resolve("tiny:1:4:64-exit:2")
    assert (ref.kind, ref.params, ref.base.spec) == ("exit", (2,), "tiny:1:4:64")
    assert (num_layers(ref), vocab_size(ref)) == (4, 49152)  # its base's facts
    exit_model, base = load_model(ref, "cpu"), load_model(resolve("tiny:1:4:64"), "cpu")
    assert exit_model.config.num_hidden_layers == 2
    ids = torch.tensor([[5, 17, 300, 9]])
    with torch.no_grad():
        hidden = base.model(ids, output_hidden_states=True).hidden_states[2]
        expected = base.lm_head(base.model.norm(hidden))
        assert torch.allclose(exit_model(ids).logits, expected, atol=1e-5)


def test_repredict_of_a_run_without_a_drafts_record_takes_the_drafts_its_rows_measured():
    """A run from before validate recorded its drafts: `--repredict` predicts the drafts it measured (read off its
    rows' chains), not today's best draft, whose rows it never measured."""
    from pathlib import Path

    from pipespec.commands.validate import measured_drafts

    run = Path(__file__).parents[1] / "figures" / "out" / "validate-2026-12-01b" / "validate.json"
    rows = json.loads(run.read_text(encoding="utf-8"))["results"]["rows"]
    assert measured_drafts(rows) == {"draft": "draft:smollm2-small4",
                                     "exit_drafts": ["draft:smollm2-exit8", "draft:smollm2-exit16"]}
    untrained = [r for r in rows if "draft:" not in r["chain"]]
    assert measured_drafts(untrained) == {"draft": None, "exit_drafts": []}
