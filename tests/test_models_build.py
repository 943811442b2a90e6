"""`pipespec models build` on a tiny budget: trains, checkpoints, resumes and exports a loadable draft."""

import json

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-exit8", "smollm2-small4"])
def test_build_resume_export_and_load(run_cli, tmp_path, monkeypatch, name):
    from pipespec.backend import distill

    monkeypatch.setenv("PIPESPEC_CHECKPOINTS", str(tmp_path / "checkpoints"))
    small = {k: v for k, v in vars(distill.RECIPES[name]).items()}
    small.update(name=f"{name}-test", steps=2, pretrain_steps=1 if small["kind"] == "small" else 0, batch=1,
                 seq_len=32, eval_windows=1, teacher_windows=2)
    monkeypatch.setitem(distill.RECIPES, f"{name}-test", distill.DraftRecipe(**small))
    out = tmp_path / "models"
    code, text, err = run_cli("models", "build", f"{name}-test", "--steps", "2", "--out", str(out), "--threads", "2")
    assert code == 0, err
    assert "step 2/2" in text
    record = json.loads((out / f"{name}-test" / "build.json").read_text())
    assert record["step"] == 2 and record["curve"][0]["step"] == 0
    from pipespec.backend.models import ModelRef, load_model

    model = load_model(ModelRef("x", "hf", out / f"{name}-test"), "cpu")
    assert model.config.num_hidden_layers == small["layers"]
