"""`pipespec theory`: tables, JSON, derivations, plots and one-line errors with exit code 2."""

import json

import pytest


def test_table_has_published_numbers(run_cli):
    code, out, err = run_cli("theory", "--alpha", "0.8", "--gamma", "4", "--c", "0.1", "--only", "pipespec")
    assert code == 0, err
    assert "0.543" in out and "2.283" in out and "2.401" in out


def test_json_document_carries_config_environment_results(run_cli, tmp_path):
    target = tmp_path / "theory.json"
    code, out, _ = run_cli("theory", "--alpha", "0.8", "--gamma", "5", "--c", "0", "--json",
                           "--output", str(target))
    assert code == 0
    document = json.loads(out)
    assert document == json.loads(target.read_text())
    assert document["config"]["alpha"] == [0.8]
    assert {"python", "packages", "cpu_count"} <= set(document["environment"])
    (row,) = document["results"]["pipespec"]
    assert row["sd_speedup"] == pytest.approx(3.689, abs=1e-3)


def test_timing_section_uses_stage_latencies(run_cli):
    code, out, _ = run_cli("theory", "--alpha", "0.8", "--gamma", "8", "--c", "0.1", "--target-ms", "120",
                           "--verify-ms", "430", "--only", "timing", "--json")
    assert code == 0
    (row,) = json.loads(out)["results"]["timing"]
    assert row["ar_ms_per_token"] == pytest.approx(120.0)
    assert row["pipespec_best_ms_per_token"] == pytest.approx(430 / 9)


def test_derive_prints_derivations_and_theorem(run_cli):
    code, out, _ = run_cli("theory", "--derive", "--only", "pipespec,sd")
    assert code == 0
    assert "[holds]" in out and "[FAILS]" not in out
    assert "== sd ==" in out and "== pipespec ==" in out


def test_plot_writes_png(run_cli, tmp_path):
    target = tmp_path / "rho.png"
    code, _, err = run_cli("theory", "--gamma", "1", "2", "4", "--plot", str(target), "--only", "pipespec")
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--alpha", "1.5"], "--alpha"),
        (["--alpha", "-0.1"], "--alpha"),
        (["--gamma", "2.5"], "--gamma"),
        (["--gamma", "-1"], "--gamma"),
        (["--c", "-0.1"], "--c"),
        (["--target-ms", "0"], "--target-ms"),
        (["--target-ms", "120", "--verify-ms", "-5"], "--verify-ms"),
        (["--verify-ms", "5"], "--verify-ms"),
        (["--pp-stages", "0"], "--pp-stages"),
        (["--exit-layer", "32"], "--exit-layer"),
        (["--hit-rate", "2"], "--hit-rate"),
        (["--only", "nonsense"], "--only"),
        (["--only", "timing"], "timing"),
        (["--output", "x.txt"], "--output"),
        (["--plot", "x.gif"], "plot"),
        (["--alpha", "abc"], "--alpha"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, tmp_path, args, names):
    code, _out, err = run_cli("theory", *args)
    assert code == 2
    assert names in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_input_writes_no_result_file(run_cli, tmp_path):
    target = tmp_path / "out.json"
    code, _, _ = run_cli("theory", "--alpha", "7", "--output", str(target))
    assert code == 2
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_help_shows_defaults_and_examples(run_cli):
    code, out, _ = run_cli("theory", "--help")
    out = " ".join(out.split())
    assert code == 0
    assert "(default: 0.6 0.8 0.9)" in out
    assert "examples:" in out
    assert "t_draft / t_target" in out


def test_console_script_exit_code(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pipespec", "theory", "--alpha", "2"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "pipespec theory: error: --alpha must be in [0, 1], got 2.0"
