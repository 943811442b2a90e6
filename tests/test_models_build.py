"""`pipespec models build` on a tiny budget: trains, checkpoints, resumes and exports a loadable draft."""

import dataclasses
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
    from pipespec.backend.loading import load_model
    from pipespec.backend.models import ModelRef

    model = load_model(ModelRef("x", "hf", out / f"{name}-test"), "cpu")
    assert model.config.num_hidden_layers == small["layers"]


@pytest.mark.slow
@pytest.mark.parametrize("top_k", [0, 4])  # the response tokens as labels, or the teacher's top-k there
def test_response_draft_trains_on_the_response_set_and_scores_alpha(run_cli, tmp_path, monkeypatch, top_k):
    """A draft distilled on the target's responses (starting from a committed draft) records α on the built-in
    prompts along its curve, next to its held-out agreement, and exports a loadable model."""
    from pipespec.backend import distill, responses

    monkeypatch.setenv("PIPESPEC_CHECKPOINTS", str(tmp_path / "checkpoints"))
    folder = tmp_path / "responses"
    folder.mkdir()
    rows = [{"id": f"r{i}", "task": "code", "prompt": "p", "prompt_ids": [1, 9, 20 + i],
             "response_ids": [30 + i, 31, 32, 2]} for i in range(6)]
    responses._write_shard(folder / "shard-0000.jsonl.gz", rows)
    (folder / "build.json").write_text(json.dumps({"spec": {}, "tokens_generated": 24}))
    monkeypatch.setattr(responses, "responses_dir", lambda: folder)
    from transformers import LlamaConfig, LlamaForCausalLM

    start = tmp_path / "start"  # a random one-layer draft to start from (the recipe's own is the committed small4)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=True)
                     ).save_pretrained(start)
    recipe = dataclasses.replace(distill.RECIPES["smollm2-chat4"], name="chat-test", steps=2, batch=2, layers=1,
                                 hidden=64, seq_len=16, builtin_tokens=3, init=str(start), top_k=top_k)
    monkeypatch.setitem(distill.RECIPES, "chat-test", recipe)
    out = tmp_path / "models"
    code, _, err = run_cli("models", "build", "chat-test", "--out", str(out), "--threads", "2")
    assert code == 0, err
    record = json.loads((out / "chat-test" / "build.json").read_text())
    assert [p["step"] for p in record["curve"]] == [0, 2]
    assert all(0 <= p["alpha_builtin"] <= 1 and 0 <= p["agreement"] <= 1 for p in record["curve"])
    assert record["tokens"] == 2 * 2 * 4  # steps x batch x the 4 response tokens each example predicts
    assert record["responses"]["tokens_generated"] == 24
