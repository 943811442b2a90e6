"""`pipespec sweep`: grids, determinism across engines and workers, resume, interruption, errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipespec.acceptance import Bernoulli
from pipespec.latency import ConstantLatency
from pipespec.sim import sweep
from pipespec.sim.config import SimConfig

BASE = ["--scheme", "pipespec", "--latency", "5", "20", "100", "--num-tokens", "300"]
GRID = ["--grid", "alpha=0.6,0.8,0.9", "--grid", "latency[2]=80,160", "--replicates", "2"]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_writes_table_and_resolved_config(run_cli, tmp_path):
    out = tmp_path / "s.csv"
    code, _, err = run_cli("sweep", *BASE, *GRID, "--output", str(out), "--workers", "1")
    assert code == 0, err
    rows = read_csv(out)
    assert len(rows) == 12
    assert [(r["alpha"], r["latency[2]"], r["replicate"]) for r in rows[:3]] == [
        ("0.6", "80", "0"), ("0.6", "80", "1"), ("0.6", "160", "0")]
    meta = json.loads((tmp_path / "s.csv.config.json").read_text())
    assert meta["config"]["grid"] == {"alpha": ["0.6", "0.8", "0.9"], "latency[2]": ["80", "160"]}
    assert meta["config"]["base"]["latency"] == ["5", "20", "100"]
    assert not (tmp_path / "s.csv.partial.jsonl").exists()


def test_same_results_whatever_the_number_of_workers(run_cli, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.parquet"
    assert run_cli("sweep", *BASE, *GRID, "--output", str(one), "--workers", "1")[0] == 0
    assert run_cli("sweep", *BASE, *GRID, "--output", str(two), "--workers", "2")[0] == 0
    import pyarrow.parquet as pq

    parquet_rows = pq.read_table(two).to_pylist()
    csv_rows = read_csv(one)
    assert [float(r["ms_per_token"]) for r in csv_rows] == [r["ms_per_token"] for r in parquet_rows]


def test_resume_skips_finished_points(tmp_path):
    base = SimConfig.from_text(scheme="pipespec", latency=("5", "20", "100"), num_tokens=200)
    axes = [sweep.parse_axis("alpha=0.6,0.9")]
    grid = sweep.points(axes, 1)
    resolved = {"base": base.to_dict(), "grid": {"alpha": ["0.6", "0.9"]}, "replicates": 1, "points": 2}
    out = tmp_path / "r.csv"
    checkpoint = sweep.Checkpoint.open(out, sweep.fingerprint(resolved), fresh=False)
    checkpoint.add(sweep.point_key(grid[0]), {"alpha": "0.6", "replicate": 0, "marker": "kept"})
    reopened = sweep.Checkpoint.open(out, sweep.fingerprint(resolved), fresh=False)
    assert list(reopened.rows) == [sweep.point_key(grid[0])]
    with pytest.raises(Exception, match="another configuration"):
        sweep.Checkpoint.open(out, "different", fresh=False)


def test_partial_sweep_resumes_from_the_cli(run_cli, tmp_path):
    out = tmp_path / "p.csv"
    grid = ["--grid", "alpha=0.6,0.9"]
    assert run_cli("sweep", *BASE, *grid, "--output", str(out), "--workers", "1")[0] == 0
    full = read_csv(out)
    # fake an interrupted run: keep one finished row in the checkpoint, with a marker value
    out.unlink()
    partial = out.with_name("p.csv.partial.jsonl")
    meta = json.loads((tmp_path / "p.csv.config.json").read_text())
    fp = sweep.fingerprint(meta["config"])
    first = {**{k: (float(v) if k not in ("alpha",) and v not in ("",) and k != "replicate" else v)
                for k, v in full[0].items()}, "replicate": 0}
    first["ms_per_token"] = -1.0
    key = sweep.point_key({"alpha": "0.6", "replicate": 0})
    partial.write_text(json.dumps({"fingerprint": fp}) + "\n" + json.dumps({"key": key, "row": first}) + "\n")
    assert run_cli("sweep", *BASE, *grid, "--output", str(out), "--workers", "1")[0] == 0
    resumed = read_csv(out)
    assert resumed[0]["ms_per_token"] == "-1.0"  # taken from the checkpoint, not recomputed
    assert resumed[1]["ms_per_token"] == full[1]["ms_per_token"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "grid is empty"),
        (["--grid", "nonsense=1,2"], "unknown parameter"),
        (["--grid", "alpha"], "NAME=V1,V2"),
        (["--grid", "alpha=0.5,1.5"], "alpha must be in [0, 1]"),
        (["--grid", "gamma=a,b"], "expected integers"),
        (["--grid", "latency[7]=5"], "latency has 3 entries"),
        (["--grid", "alpha=0.5", "--output", "x.txt"], "--output must end in .csv or .parquet"),
        (["--grid", "alpha=0.5", "--engine", "dask"], "--engine dask needs --scheduler"),
    ],
)
def test_bad_sweeps_are_one_line_errors(run_cli, tmp_path, args, message):
    if "--output" not in args:
        args = [*args, "--output", str(tmp_path / "bad.csv")]
    code, _, err = run_cli("sweep", *BASE, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.csv").exists()


@pytest.mark.slow
def test_ctrl_c_stops_workers_and_keeps_finished_points(tmp_path):
    out = tmp_path / "big.csv"
    cmd = [sys.executable, "-m", "pipespec", "sweep", "--scheme", "pipespec", "--latency", "5", "20", "100",
           "--num-tokens", "3000", "--grid", "alpha=" + ",".join(f"0.{i}" for i in range(50, 99)),
           "--output", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    partial = out.with_name("big.csv.partial.jsonl")
    deadline = time.time() + 180  # generous: CI's 2 cores may be shared
    while time.time() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    kept = len(partial.read_text().splitlines()) - 1
    assert kept >= 2 and not out.exists()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                                         check=False).stdout.strip():
        time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == "", "worker processes survived Ctrl-C"
    # the same command resumes and finishes
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert len(read_csv(out)) == 49


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_results(run_cli, tmp_path):
    from distributed import LocalCluster

    local_out, dask_out = tmp_path / "local.csv", tmp_path / "dask.csv"
    assert run_cli("sweep", *BASE, *GRID, "--output", str(local_out), "--workers", "2")[0] == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        code, _, err = run_cli("sweep", *BASE, *GRID, "--output", str(dask_out), "--engine", "dask",
                               "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    assert read_csv(local_out) == read_csv(dask_out)


def test_unreachable_scheduler_is_a_one_line_error(run_cli, tmp_path):
    code, _, err = run_cli("sweep", *BASE, "--grid", "alpha=0.5", "--output", str(tmp_path / "d.csv"),
                           "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the Dask scheduler" in err


def test_grid_seed_is_honoured_and_typed_values(run_cli, tmp_path):
    out = tmp_path / "seed.csv"
    code, _, err = run_cli("sweep", *BASE, "--grid", "seed=1,2,3", "--output", str(out), "--workers", "1")
    assert code == 0, err
    rows = read_csv(out)
    assert len({r["ms_per_token"] for r in rows}) == 3, "the replicate overwrote the grid's seed"
    assert sweep.apply(SimConfig.from_text(), {"seed": 7, "replicate": 2}).seed == 9
    axis = sweep.parse_axis("head_share=0.1,0.25")
    assert axis.values == (0.1, 0.25) and sweep.parse_axis("gamma=2,4").values == (2, 4)
    assert sweep.parse_axis("lazy_drafter=true,false").values == (True, False)


PPSD = ["--scheme", "ppsd", "--latency", "100"]  # (after BASE: the last --scheme and --latency win)


@pytest.mark.parametrize(("grid", "fragment", "scheme"), [
    ("head_share=abc", "--grid head_share: expected numbers, got 'abc'", PPSD),
    ("head_share=1.5", "--head-share must be in [0, 1)", PPSD),
    ("gamma=1.5", "--grid gamma: expected integers, got '1.5'", []),
    ("max_drafts=inf", "--grid max_drafts: expected integers", []),
    ("gamma=2,4", "--grid gamma: applies to sd, not pipespec", []),
    ("exit_layer=4,8", "--grid exit_layer: applies to ppsd, not pipespec or sd",
     ["--grid", "scheme=pipespec,sd"]),
])
def test_grid_values_are_one_line_errors(run_cli, tmp_path, grid, fragment, scheme):
    code, _, err = run_cli("sweep", *BASE, *scheme, "--grid", grid, "--output", str(tmp_path / "x.csv"))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "fragment"), [
    (["--grid", "seed=1,2", "--grid", "seed=3"], "seed given twice"),
    (["--grid", "seed=1", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler applies only with --engine dask"),
    (["--grid", "seed=1", "--engine", "dask", "--scheduler", "notanaddress"], "--scheduler: cannot reach"),
    (["--grid", "seed=1", "--workers", "0"], "--workers must be an integer >= 1"),
    (["--grid", "seed=1", "--replicates", "0"], "--replicates must be an integer in 1.."),
])
def test_sweep_options_are_one_line_errors_before_any_file(run_cli, tmp_path, args, fragment):
    code, _, err = run_cli("sweep", *BASE, *args, "--output", str(tmp_path / "x.csv"))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir()), "a file was left behind"


@pytest.mark.parametrize("content", ["garbage\n", '{"fingerprint": "FP"}\n{"row": {}}\n', "\udcff"])
def test_corrupt_checkpoint_is_a_one_line_error(run_cli, tmp_path, content):
    out = tmp_path / "c.csv"
    base = SimConfig.from_text(scheme="pipespec", latency=("5", "20", "100"), num_tokens=300)
    axes = [sweep.parse_axis("seed=1")]
    resolved = {"base": base.to_dict(), "grid": {a.name: list(a.values) for a in axes}, "replicates": 1,
                "points": 1}
    text = content.replace("FP", sweep.fingerprint(resolved))
    (tmp_path / "c.csv.partial.jsonl").write_bytes(text.encode("utf-8", "surrogateescape"))
    code, _, err = run_cli("sweep", *BASE, "--grid", "seed=1", "--output", str(out), "--workers", "1")
    assert code == 2 and "use --fresh" in err and "Traceback" not in err, err


def test_workers_beyond_the_machine_are_capped(run_cli, tmp_path):
    code, _, err = run_cli("sweep", *BASE, "--grid", "seed=1,2", "--output", str(tmp_path / "w.csv"),
                           "--workers", "100000")
    assert code == 0 and "capped at" in err, err


def test_successful_parallel_sweep_shuts_down_silently(tmp_path):
    """Idle pool workers used to inherit the CLI's SIGTERM handler and print KeyboardInterrupt tracebacks when
    the pool stopped them; a worker's stderr is the process's own, so run the CLI as a process."""
    for attempt in range(3):
        done = subprocess.run([sys.executable, "-m", "pipespec", "sweep", *BASE, "--grid", "seed=1,2,3,4,5,6",
                               "--output", str(tmp_path / f"q{attempt}.csv"), "--workers", "2"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_one_option_of_every_type_can_be_swept(run_cli, tmp_path):
    """A choice, an integer, an optional integer, a number, a flag and a tuple's element and whole value, swept
    through the CLI: each reaches the simulator typed as the CLI types it, and changes what it computes. (The
    number is ppsd's head share: no pipespec option is a number.)"""
    out, layered = tmp_path / "types.csv", tmp_path / "number.csv"
    axes = ["coordination=lockfree,reference", "min_drafts=1,2", "max_drafts=none,2", "lazy_drafter=true,false",
            "latency[0]=5,10", "acceptance=0.7,0.9"]
    code, _, err = run_cli("sweep", *BASE, *[a for axis in axes for a in ("--grid", axis)], "--output", str(out),
                           "--workers", "1")
    assert code == 0, err
    code, _, err = run_cli("sweep", *BASE, *PPSD, "--grid", "head_share=0,0.1", "--output", str(layered),
                           "--workers", "1")
    assert code == 0, err
    rows, number = read_csv(out), read_csv(layered)
    assert len(rows) == 2 ** len(axes)
    point = {"coordination": "reference", "min_drafts": 2, "max_drafts": None, "lazy_drafter": False,
             "latency[0]": "10", "acceptance": ("0.9",)}
    config = sweep.apply(SimConfig.from_text(scheme="pipespec", latency=("5", "20", "100")), point)
    recorded, options = config.to_dict(), config.options
    assert (options.coordination, options.min_drafts, options.max_drafts, options.lazy_drafter,
            recorded["latency"], recorded["acceptance"]) == ("reference", 2, None, False, ("10", "20", "100"),
                                                             ("0.9",))
    assert config.latency[0] == ConstantLatency(0.010) and config.acceptance == (Bernoulli(0.9),)
    layer = sweep.apply(SimConfig.from_text(scheme="ppsd", latency=("100",)), {"head_share": 0.1})
    assert layer.options.head_share == 0.1
    for name, table in (("coordination", rows), ("min_drafts", rows), ("max_drafts", rows), ("latency[0]", rows),
                        ("acceptance", rows), ("head_share", number)):
        by_value = {}
        for row in table:
            by_value.setdefault(row[name], []).append(float(row["ms_per_token"]))
        assert len(by_value) == 2 and len({round(sum(v), 6) for v in by_value.values()}) == 2, name
