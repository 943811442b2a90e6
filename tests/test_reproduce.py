"""`pipespec reproduce --quick`: every figure is written and the run records its cost."""

import json

import pytest


@pytest.mark.slow
def test_reproduce_quick_writes_figures(run_cli, tmp_path):
    code, out, err = run_cli("reproduce", "--out", str(tmp_path), "--quick", "--no-backend")
    assert code == 0, err
    summary = json.loads((tmp_path / "reproduce.json").read_text())
    files = [f for entry in summary["results"].values() for f in entry["files"]]
    assert len(files) == 14 and not (tmp_path / "local").exists()
    for name in files:
        path = tmp_path / name.split("/")[-1]
        assert path.stat().st_size > 0
    assert summary["wall_time_s"] > 0 and summary["peak_rss_mib"] > 0
    assert "done in" in out
