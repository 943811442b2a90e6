"""`pipespec reproduce --quick`: every figure is written and the run records its cost."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_reproduce_quick_writes_figures(run_cli, tmp_path):
    code, out, err = run_cli("reproduce", "--out", str(tmp_path), "--quick", "--no-backend")
    assert code == 0, err
    summary = json.loads((tmp_path / "reproduce.json").read_text())
    files = [f for entry in summary["results"].values() for f in entry["files"]]
    # 14 figures and tables of the closed forms, the simulator and the calibration; 8 of the predictions from the
    # authors' logs (with the 3 imported files behind them); 2 of the acceptance models compared; 4 of the drafts
    # (their training curves, and which drafts pay from the committed benchmark run: .png, .csv, .md)
    assert len(files) == 28 and not (tmp_path / "local").exists()
    assert (tmp_path / "draft_economics.md").is_file() and (tmp_path / "draft_alpha_curve.png").is_file()
    for name in files:
        path = next(p for p in (tmp_path / name.split("/")[-1], Path(name)) if p.exists())
        assert path.stat().st_size > 0
    assert (tmp_path / "a100_async_predictions.csv").is_file()
    assert all("interference" in entry for entry in summary["results"].values())
    assert summary["wall_time_s"] > 0 and summary["peak_rss_mib"] > 0
    assert "done in" in out
