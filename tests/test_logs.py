"""Log import: the reference chain's replay on synthetic logs from known traces, the readers' one-line errors,
profiles and traces from the committed logs, and the CLI."""

import json

import numpy as np
import pytest

from pipespec.cli import main
from pipespec.errors import ConfigError
from pipespec.logs.build import import_runs, write_import
from pipespec.logs.records import read_jsonl, read_logs, read_reference
from pipespec.logs.replay import replay_chain, replay_rounds
from pipespec.logs.synthetic import synthetic_chain_log
from pipespec.traces import load_trace
from pipespec.validation.gpu_logs import logs_folder


def _bits(seed, alpha, n=900, pairs=1):
    rng = np.random.default_rng(seed)
    return [list((rng.random(n) < alpha).astype(int)) for _ in range(pairs)]


def _wrong(replayed, truth):
    observed = [(p, b) for p, b in enumerate(replayed) if b is not None]
    return len(observed), sum(1 for p, b in observed if b != truth[p])


@pytest.mark.parametrize("lookahead", [2, 3, 5, 8, 12])
@pytest.mark.parametrize("alpha", [0.6, 0.9])
def test_two_model_replay_recovers_known_traces(lookahead, alpha):
    """The replay reproduces the decoder's drafting steps exactly; the only bits it gets wrong are those of
    rule 4's ambiguous readings (at most two per reading: the position read as differing and the next)."""
    bits = _bits(lookahead, alpha)
    log = synthetic_chain_log(bits, lookahead, 400)
    replay = replay_chain(log, lookahead, 2)
    assert replay.drafting_steps == len(log.model_times_s[0]), "replayed drafting steps differ from the log's"
    assert replay.conflicts == 0
    observed, wrong = _wrong(replay.bits[0], bits[0])
    assert wrong <= 2 * replay.ambiguous, f"{wrong} wrong bits from {replay.ambiguous} ambiguous readings"
    assert observed >= 0.85 * len(log.added[0]) * 1  # every round observes at least one position


def test_full_agreement_is_every_position_agreed():
    bits = [[1] * 200]
    log = synthetic_chain_log(bits, 5, 100)
    assert set(log.added[0]) == {5}  # every window accepted, the drafter drafting the bonus position itself
    replay = replay_chain(log, 5, 2)
    assert replay.ambiguous == 0 and all(b == 1 for b in replay.bits[0][1:100])


def test_no_agreement_is_single_token_rounds():
    log = synthetic_chain_log([[0] * 200], 4, 50)
    assert set(log.added[0]) == {1}
    replay = replay_chain(log, 4, 2)
    assert all(b == 0 for b in replay.bits[0][1:49])


def test_three_model_replay_recovers_middle_and_final_pairs():
    bits = _bits(7, 0.85, pairs=2)
    log = synthetic_chain_log(bits, 8, 400)
    replay = replay_chain(log, 8, 3)
    assert replay.conflicts == 0
    for pair in range(2):
        observed, wrong = _wrong(replay.bits[pair], bits[pair])
        assert observed > 150 and wrong <= 2 * replay.ambiguous + 2


def test_rounds_replay(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"run": "r", "models": ["d", "t"], "request": 0,
                                "steps": [{"drafted": 3, "accepted": 3, "verify_s": 0.02},
                                          {"drafted": 3, "accepted": 1, "verify_s": 0.02},
                                          {"drafted": 0, "accepted": 0, "verify_s": 0.01}]}) + "\n")
    (run,) = read_jsonl(path)
    replay = replay_rounds(run.requests[0])
    # 0 is the prefill's; 1-3 agree, 4 is the bonus (unobserved); 5 agrees, 6 differs (the verifier's correction
    # takes it); 7 is decoded alone
    assert replay.bits[0] == [None, 1, 1, 1, None, 1, 0, None]
    assert [(f.num_tokens, f.time_s) for f in replay.forwards] == [(4, 0.02), (4, 0.02), (1, 0.01)]


@pytest.mark.parametrize(("line", "fragment"), [
    ("not json", "line 1: not valid JSON"),
    ('{"models": ["d"], "steps": []}', "line 1.models: must name the draft and the target"),
    ('{"models": ["d", "t"], "steps": [{"drafted": 2, "accepted": 3}]}', "line 1.steps[0].accepted: 3 accepted of 2"),
    ('{"models": ["d", "t"], "steps": [{"drafted": -1, "accepted": 0}]}', "steps[0].drafted: must be an integer"),
    ('{"models": ["d", "t"], "steps": [{"drafted": 1, "accepted": 0, "verify_s": "x"}]}', "verify_s: must be a finite"),
    ('{"models": ["d", "t"], "steps": "x"}', "line 1.steps: must be a list"),
])
def test_jsonl_errors_name_file_and_field(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        read_jsonl(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_reference_errors_name_file_and_field(tmp_path):
    good = json.loads((logs_folder() / "chain_Llama-3.2-1B-Instruct-Llama-3.1-8B-Instruct_5.json").read_text())
    first = good["samples"][0]
    cases = [({**good, "strategy": "async-chain"}, "strategy: must be chain or greedy"),
             ({**good, "samples": []}, "samples: empty"),
             ({**good, "samples": [{**good["samples"][0], "tokens_generated": 0}]}, "samples[0].tokens_generated"),
             ({**good, "samples": [{**good["samples"][0], "accepted_tokens": [[1, 0]]}]}, "accepted_tokens[0][1]"),
             ({**good, "models": good["models"][:1]}, "models: a chain run needs two or more"),
             ({**good, "samples": [{**first, "accepted_tokens": [[9, *first["accepted_tokens"][0][1:]]]}]},
              "accepted_tokens[0][0]: 9 tokens added exceeds the lookahead 5"),
             ({**good, "samples": [{**first, "model_times_s": [first["model_times_s"][0], [0.1]]}]},
              "model_times_s[1]: 1 entries for 86 rounds")]
    for document, fragment in cases:
        path = tmp_path / "run.json"
        path.write_text(json.dumps(document))
        with pytest.raises(ConfigError) as info:
            read_reference(path)
        assert str(path) in str(info.value) and fragment in str(info.value), str(info.value)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_reference(path)


def test_committed_logs_replay_exactly_and_import(tmp_path, run_cli):
    """On the authors' two-model chains (lookahead >= 2) the replay reproduces every logged drafting step."""
    runs = read_logs("reference", [logs_folder()])
    assert len(runs) == 26
    imported = import_runs(runs)
    for summary in imported.replays:
        if summary["strategy"] == "chain" and summary["lookahead"] >= 2 and summary["run"].count("Llama") == 2:
            assert summary["drafting_steps_replayed"] == summary["drafting_steps_logged"], summary["run"]
    files = write_import(imported, tmp_path)
    name = "Llama-3.2-1B-Instruct@float16x1->Llama-3.1-8B-Instruct@float32x1"
    entry = imported.traces[name]
    assert len(entry["runs"]) == 19 and entry["imputed_positions"] < 0.01 * entry["positions"]
    trace = load_trace(files["traces"], name)
    assert len(trace.starts) == 10 and 0.8 < trace.mean_alpha() < 1.0
    big = imported.profiles["Meta-Llama-3.1-70B-Instruct@float16x2"]
    measured = {p["num_tokens"]: p["median_s"] for p in big["points"] if p["source"] == "measured"}
    assert measured[1] < 0.5 * measured[8]  # NF4's single-token fast path is kept apart from wider forwards
    assert big["prefill_s"] and big["fit"]["max_rel_error"] is not None
    # plan reads the import: which chain for the 70B on three A100s (it needs two)
    code, out, err = run_cli("plan", "--profile", str(files["profile"]), "--traces", str(files["traces"]),
                             "--models", "Llama-3.2-1B-Instruct@float16x1", "Meta-Llama-3.1-70B-Instruct@float16x2",
                             "--device-count", "Meta-Llama-3.1-70B-Instruct@float16x2=2", "--devices", "3", "--json")
    assert code == 0, err
    best = json.loads(out)["results"]["finalists"][0]
    assert best["scheme"] in ("pipespec", "sd") and best["sim_speedup"] > 1


def test_import_logs_cli(tmp_path, capsys):
    path = tmp_path / "engine.jsonl"
    rows = [{"run": "mine", "models": ["d", "t"], "request": k,
             "steps": [{"drafted": 4, "accepted": a, "verify_s": 0.03} for a in (4, 2, 0, 4, 1, 3)]}
            for k in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["import-logs", "jsonl", str(path), "--out", str(out), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["results"]["runs"][0]["draft_acceptance_rate"] == pytest.approx(14 / 24)
    assert (out / "traces.json").is_file() and (out / "profile.json").is_file()
    code = main(["import-logs", "jsonl", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2")])
    assert code == 2 and not (tmp_path / "o2").exists()
    assert "no such log file" in capsys.readouterr().err


@pytest.mark.slow
def test_a100_predictions_files(tmp_path):
    """reproduce's predictions from the logs: the CSV's exact columns, one row per run and coordination, and the
    synchronous runs re-predicted from the imported traces and profiles within 5% of their logged ms/token (a
    deterministic back-test of the import: the simulation has no timing of this machine in it)."""
    import csv
    from pathlib import Path

    from pipespec.commands.reproduce import _a100_logs
    from pipespec.validation.gpu_logs import CSV_COLUMNS

    files = _a100_logs(Path(tmp_path))
    with open(tmp_path / "a100_async_predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * (21 + 3) and {r["coordination"] for r in rows} == {"lockfree", "reference"}
    assert "async-chain_Llama-3.2-1B-Instruct-Llama-3.1-8B-Instruct_5" in {r["run"] for r in rows}
    with open(tmp_path / "a100_sync_checks.csv", encoding="utf-8") as handle:
        checks = list(csv.DictReader(handle))
    assert len(checks) == 22
    worst = max(checks, key=lambda c: abs(float(c["error"])))
    assert abs(float(worst["error"])) < 0.05, worst
    assert (tmp_path / "a100_lookahead.png") in files


def test_imported_files_drive_simulate_and_sweep(run_cli, tmp_path):
    """An engine's per-round JSONL, imported, is what simulate and sweep read."""
    path = tmp_path / "engine.jsonl"
    rng = np.random.default_rng(0)
    lines = []
    for k in range(4):
        steps = [{"drafted": 4, "accepted": int(a), "verify_s": 0.030 + 0.002 * 4} for a in rng.integers(0, 5, 40)]
        lines.append(json.dumps({"run": "r", "models": ["d", "t"], "request": k, "steps": steps}))
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "imp"
    assert run_cli("import-logs", "jsonl", str(path), "--out", str(out))[0] == 0
    profile, traces = out / "profile.json", out / "traces.json"
    pair = "d@unknownx1->t@unknownx1"
    code, stdout, err = run_cli("simulate", "--scheme", "sd", "--latency", "2", f"profile:{profile}#t@unknownx1",
                                "--acceptance", f"trace:{traces}#{pair}", "--gamma", "4", "--num-tokens", "100",
                                "--trace-sequence", "1", "--json")
    assert code == 0, err
    assert json.loads(stdout)["results"]["pairs"][0]["draft_acceptance_rate"] is not None
    code, _, err = run_cli("sweep", "--scheme", "sd", "--latency", "2", f"profile:{profile}#t@unknownx1",
                           "--acceptance", f"trace:{traces}#{pair}", "--num-tokens", "60", "--grid", "gamma=2,4",
                           "--output", str(tmp_path / "s.csv"), "--workers", "1")
    assert code == 0, err
