"""`pipespec simulate`: presets, config files, outputs and one-line errors."""

import json

import pytest


def test_preset_runs_and_reports_conventions(run_cli):
    code, out, err = run_cli("simulate", "--preset", "pipespec-a100", "--num-tokens", "300")
    assert code == 0, err
    assert "ms/token" in out and "speedup" in out and "τ mean accepted length" in out


def test_json_output_carries_resolved_config(run_cli, tmp_path):
    target = tmp_path / "r.json"
    code, out, _ = run_cli("simulate", "--scheme", "sd", "--latency", "10", "100", "--acceptance", "0.8",
                           "--num-tokens", "200", "--json", "--output", str(target))
    assert code == 0
    document = json.loads(out)
    assert document == json.loads(target.read_text())
    assert document["config"]["scheme"] == "sd" and document["config"]["latency"] == ["10", "100"]
    assert document["results"]["speedup_over_ar"] > 1
    assert "packages" in document["environment"]


@pytest.mark.parametrize("suffix", ["toml", "yaml"])
def test_config_file_then_flags_override(run_cli, tmp_path, suffix):
    path = tmp_path / f"run.{suffix}"
    if suffix == "toml":
        path.write_text('scheme = "sd"\nlatency = ["10", "100"]\nacceptance = 0.7\ngamma = 3\nnum_tokens = 150\n')
    else:
        path.write_text("scheme: sd\nlatency: [10, 100]\nacceptance: 0.7\ngamma: 3\nnum_tokens: 150\n")
    code, out, err = run_cli("simulate", "--config", str(path), "--gamma", "5", "--json")
    assert code == 0, err
    config = json.loads(out)["config"]
    assert config["gamma"] == 5 and config["latency"] == ["10", "100"] and config["acceptance"] == ["0.7"]


def test_trace_and_timeline_plot(run_cli, tmp_path):
    trace, plot = tmp_path / "t.json", tmp_path / "t.png"
    code, _, err = run_cli("simulate", "--preset", "toy", "--num-tokens", "30", "--trace", str(trace),
                           "--plot", str(plot))
    assert code == 0, err
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["tid"] for e in events if e["ph"] == "X"} == {0, 1, 2}
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheme", "bogus"], "--scheme"),
        (["--acceptance", "1.5"], "--acceptance[0]"),
        (["--latency", "0", "10", "20"], "--latency[0]"),
        (["--latency", "-5", "10", "20"], "--latency[0]"),
        (["--scheme", "sd", "--latency", "10"], "needs at least 2 models"),
        (["--latency", "profile:/no/such.json#M0", "1", "2"], "does not exist"),
        (["--acceptance", "0.5", "0.6", "0.7"], "--acceptance: give 1 or 2"),
        (["--num-tokens", "0"], "--num-tokens"),
        (["--scheme", "ppsd", "--latency", "10", "--exit-layer", "40"], "--exit-layer"),
        (["--scheme", "ppsd", "--latency", "10", "--pp-stages", "1"], "--pp-stages"),
        (["--scheme", "ppsd", "--latency", "10", "--num-layers", "4", "--exit-layer", "1", "--pp-stages", "5"],
         "must be <= --num-layers"),
        (["--devices", "a", "b"], "--devices"),
        (["--config", "/no/such.toml"], "--config"),
        (["--output", "x.csv"], "--output"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, args, message):
    code, _, err = run_cli("simulate", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malformed_and_unknown_config_keys(run_cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("scheme = \n")
    code, _, err = run_cli("simulate", "--config", str(bad))
    assert code == 2 and "malformed" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("speed: 3\n")
    code, _, err = run_cli("simulate", "--config", str(unknown))
    assert code == 2 and "unknown key(s) speed" in err


def test_malformed_trace_file(run_cli, tmp_path):
    bad = tmp_path / "trace.json"
    bad.write_text(json.dumps({"format": "pipespec.acceptance-trace", "version": 1, "pairs": {"a->b": {}}}))
    code, _, err = run_cli("simulate", "--scheme", "sd", "--latency", "1", "10", "--acceptance", f"trace:{bad}")
    assert code == 2 and "malformed sequences" in err


def test_a_results_recorded_configuration_reproduces_it(run_cli, tmp_path):
    """The config block of a result (spec fields as the text given: a profile, a trace), written back as a
    config file (YAML reads the JSON), runs the same simulation again."""
    from pipespec.profiles import write_profiles
    from pipespec.traces import write_traces

    profile, traces = tmp_path / "p.json", tmp_path / "t.json"
    write_profiles(profile, {"big": {"points": [{"num_tokens": n, "context_len": 0, "median_s": 0.05 + 0.004 * n}
                                                for n in (1, 4, 9)]}})
    write_traces(traces, {"small->big": {"sequences": [[1, 1, 1, 0] * 40]}})
    code, out, err = run_cli("simulate", "--scheme", "pipespec", "--latency", "4", f"profile:{profile}#big",
                             "--acceptance", f"trace:{traces}#small->big", "--num-tokens", "120", "--seed", "3",
                             "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["config"]["latency"] == ["4", f"profile:{profile}#big"]
    again = tmp_path / "again.yaml"
    again.write_text(json.dumps(first["config"]))
    code, out, err = run_cli("simulate", "--config", str(again), "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["config"] == first["config"] and second["results"] == first["results"]
