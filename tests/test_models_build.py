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


def _response_set(tmp_path, monkeypatch, response):
    """Six responses (prompt [1, 9, 20 + i], response `response(i)`) as the committed set, checkpoints in tmp."""
    from pipespec.backend import responses

    monkeypatch.setenv("PIPESPEC_CHECKPOINTS", str(tmp_path / "checkpoints"))
    folder = tmp_path / "responses"
    folder.mkdir()
    rows = [{"id": f"r{i}", "task": "code", "prompt": "p", "prompt_ids": [1, 9, 20 + i],
             "response_ids": response(i)} for i in range(6)]
    responses._write_shard(folder / "shard-0000.jsonl.gz", rows)
    (folder / "build.json").write_text(json.dumps({"spec": {}, "tokens_generated": sum(len(r["response_ids"])
                                                                                       for r in rows)}))
    monkeypatch.setattr(responses, "responses_dir", lambda: folder)


def _build(run_cli, tmp_path, monkeypatch, recipe):
    """`pipespec models build` of `recipe` into tmp_path/models; its build record."""
    from pipespec.backend import distill

    monkeypatch.setitem(distill.RECIPES, recipe.name, recipe)
    code, _, err = run_cli("models", "build", recipe.name, "--out", str(tmp_path / "models"), "--threads", "2")
    assert code == 0, err
    return json.loads((tmp_path / "models" / recipe.name / "build.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("top_k", [0, 4])  # the response tokens as labels, or the teacher's top-k there
def test_response_draft_trains_on_the_response_set_and_scores_alpha(run_cli, tmp_path, monkeypatch, top_k):
    """A draft distilled on the target's responses (starting from a committed draft) records α on the built-in
    prompts along its curve, next to its held-out agreement, and exports a loadable model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipespec.backend import distill

    _response_set(tmp_path, monkeypatch, lambda i: [30 + i, 31, 32, 2])

    start = tmp_path / "start"  # a random one-layer draft to start from (the recipe's own is the committed small4)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=True)
                     ).save_pretrained(start)
    recipe = dataclasses.replace(distill.RECIPES["smollm2-chat4"], name="chat-test", steps=2, batch=2, layers=1,
                                 hidden=64, seq_len=16, builtin_tokens=3, init=str(start), top_k=top_k,
                                 responses=6)
    record = _build(run_cli, tmp_path, monkeypatch, recipe)
    assert [p["step"] for p in record["curve"]] == [0, 2]
    assert all(0 <= p["alpha_builtin"] <= 1 and 0 <= p["agreement"] <= 1 for p in record["curve"])
    assert record["tokens"] == 2 * 2 * 4  # steps x batch x the 4 response tokens each example predicts
    assert record["responses"]["tokens_generated"] == 24
    assert record["held_out"] == {"rows": 1, "after_row": 0} and record["responses_before"] == 0
    # a recipe keeps the responses it learnt from: one that asks for more than the set holds says so
    monkeypatch.setitem(distill.RECIPES, "chat-more", dataclasses.replace(recipe, name="chat-more", responses=7))
    code, _, err = run_cli("models", "build", "chat-more", "--out", str(tmp_path / "models"), "--threads", "2")
    assert code == 2 and "chat-more learns from the first 7 responses; the set has 6" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_feature_draft_trains_on_the_targets_features_and_loads_over_the_target(run_cli, tmp_path, monkeypatch):
    """An EAGLE-style draft learns from the target's cached features at the response positions, records α at
    each unrolled step along its curve, and exports only its head, which loads over the target."""
    from pipespec.backend import distill

    _response_set(tmp_path, monkeypatch, lambda i: [30 + i, 31, 32, 33, 2])
    recipe = dataclasses.replace(distill.RECIPES["smollm2-eagle1"], name="eagle-test", steps=2, batch=2, seq_len=16,
                                 builtin_tokens=4, depth=2, negatives=64, responses=6)
    record = _build(run_cli, tmp_path, monkeypatch, recipe)
    out = tmp_path / "models"
    assert [p["step"] for p in record["curve"]] == [0, 2]
    last = record["curve"][-1]
    assert all(0 <= last[k] <= 1 for k in ("alpha_builtin", "alpha_builtin_d2", "agreement"))
    assert record["tokens"] == 2 * 2 * 5
    from pipespec.backend.eagle import load_feature_draft
    from pipespec.backend.loading import load_model
    from pipespec.backend.models import ModelRef, is_feature_draft

    assert is_feature_draft(out / "eagle-test")
    draft = load_feature_draft(out / "eagle-test", lambda base: load_model(ModelRef(base, "hf", None), "cpu"))
    assert len(draft.lm_head.weight) == 49152 and draft.head.layer_index == 29


def test_the_teachers_response_targets_are_cached_per_block_and_join_as_one(tmp_path, monkeypatch):
    """A grown response set reuses the teacher's cached targets of the blocks it had: computed block by block,
    the joined targets (top-k, features and both offset tables) are those of the whole set at once."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipespec.backend import distill
    from pipespec.backend.draft_data import response_examples, response_teacher

    monkeypatch.setenv("PIPESPEC_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    target = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1)).eval()
    rows = [{"prompt_ids": [1, 5 + i], "response_ids": [10 + j for j in range(1 + i % 4)]} for i in range(7)]
    ids, mask = response_examples(rows, 8, 0)
    recipe = dataclasses.replace(distill.RECIPES["smollm2-eagle1"], top_k=4, batch=2)
    whole = response_teacher(ids, mask, recipe, target, features=True, block=100)
    joined = response_teacher(ids, mask, recipe, target, features=True, block=3)
    assert set(joined) == set(whole) == {"probs", "index", "offsets", "features", "feature_offsets"}
    assert torch.equal(joined["offsets"], whole["offsets"]) and int(whole["offsets"][-1]) == int(mask.sum())
    assert torch.equal(joined["feature_offsets"], whole["feature_offsets"])
    assert torch.equal(joined["index"], whole["index"])
    assert torch.allclose(joined["probs"].float(), whole["probs"].float(), atol=1e-3)
    assert torch.allclose(joined["features"].float(), whole["features"].float(), atol=1e-2)
    cached = sorted(p.name for p in (tmp_path / "cache" / "corpus").iterdir())
    assert len(cached) == 1 + 3 and any(name.startswith("teacher-responses-flat-1x8-") for name in cached)
    # the blocks are cached: asked again (with no target to run), the set's first block comes from its file
    assert torch.equal(response_teacher(ids[:3], mask[:3], recipe, None, features=True, block=3)["index"],
                       joined["index"][:int(joined["offsets"][3])])


def test_the_held_out_rows_are_ones_the_starting_draft_never_learnt_from():
    """A draft fine-tuned from one that learnt the set's first rows holds out only rows past them, and trains
    on every other row; a fresh draft holds out 5% of the whole set."""
    import numpy as np

    from pipespec.backend.draft_data import held_out_split

    held, train = held_out_split(4096, 2048, seed=0)
    assert len(held) == 204 and held.min() >= 2048
    assert sorted(np.concatenate([held, train]).tolist()) == list(range(4096))
    held, train = held_out_split(2048, 0, seed=0)
    assert len(held) == 102 and held.min() < 1024
    assert sorted(np.concatenate([held, train]).tolist()) == list(range(2048))
    held, _ = held_out_split(6, 3, seed=0)
    assert len(held) == 1 and held[0] >= 3


def test_a_draft_started_from_one_trained_on_its_corpus_counts_that_ones_tokens_first(tmp_path):
    """The α curve's tokens axis: a draft fine-tuned from one that learnt from the same corpus starts where that
    one (and whatever it started from) ended; from a draft of another corpus, or from scratch, at 0."""
    from pipespec.backend import distill

    start = tmp_path / "start"
    start.mkdir()
    chat = dataclasses.replace(distill.RECIPES["smollm2-chat5"], init=str(start))
    assert distill.tokens_before(chat) == 0  # a checkpoint folder without a build record
    (start / "build.json").write_text(json.dumps({"recipe": {"corpus": "responses"}, "tokens": 100,
                                                  "tokens_before": 20}))
    assert distill.tokens_before(chat) == 120
    assert distill.responses_before(chat) == distill.DraftRecipe.responses  # (a record from before it was kept)
    (start / "build.json").write_text(json.dumps({"recipe": {"corpus": "responses", "responses": 4096},
                                                  "tokens": 100, "responses_before": 2048}))
    assert distill.responses_before(chat) == 4096
    (start / "build.json").write_text(json.dumps({"recipe": {"corpus": "stdlib"}, "tokens": 100}))
    assert distill.tokens_before(chat) == 0 and distill.responses_before(chat) == 0
    assert distill.tokens_before(distill.RECIPES["smollm2-eagle1"]) == 0
    assert distill.tokens_before(distill.RECIPES["smollm2-chat4"]) == 0  # small4 learnt from the stdlib corpus
