"""Feature drafts (EAGLE-style, backend/eagle.py) over a tiny random target: greedy decoding with one stays the
target's own output token for token in sd and in the pipeline (over either transport), the drafter's state (its
features, its cache) follows the verifier's corrections, and a chain or folder it cannot run is a one-line error.
Speculative sampling with one keeps the target's distribution: test_backend_engines.py."""

import numpy as np
import pytest
import torch

from pipespec.backend.engines import DecodeOptions, decode_ar, decode_sd
from pipespec.backend.loading import load_model
from pipespec.backend.models import resolve
from pipespec.backend.stages import FeatureStage, build_stage, feeds_features
from pipespec.errors import ConfigError

TARGET = "tiny:1:3:64:16"  # a 16-token vocabulary: a random head agrees with the target often enough to accept


@pytest.fixture(scope="module")
def feature_draft(tmp_path_factory):
    """A random feature head over the tiny target, saved as a draft folder."""
    from pipespec.backend.eagle import FeatureHead, save_head

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("drafts") / "eagle-tiny"
    save_head(FeatureHead(load_model(resolve(TARGET), "cpu")), folder, base=TARGET)
    return str(folder)


def prompts(count=4):
    rng = np.random.default_rng(3)
    return [rng.integers(0, 16, size=int(rng.integers(6, 20))).tolist() for _ in range(count)]


def chain_stages(chain, temperature=0.0):
    refs = [resolve(s) for s in chain]
    return [build_stage(ref, f"M{i}", "cpu", temperature, i, features=feeds_features(refs, i))
            for i, ref in enumerate(refs)]


@pytest.mark.parametrize("gamma", [1, 4])
def test_greedy_sd_with_a_feature_draft_is_the_targets_greedy_output(feature_draft, gamma):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=40, gamma=gamma)
    target = build_stage(resolve(TARGET), "T", "cpu", 0.0)
    drafted = accepted = 0
    for prompt in prompts():
        stages = chain_stages([feature_draft, TARGET])
        assert isinstance(stages[0], FeatureStage) and stages[1].features is not None
        result = decode_sd(stages, prompt, options)
        assert result.output == decode_ar([target], prompt, options).output
        drafted += result.pairs[0].drafted
        accepted += result.pairs[0].accepted
    assert 0 < accepted < drafted  # both paths: accepted drafts and rejections with the drafter's rollback


def test_the_drafter_holds_the_verifiers_features_after_every_round(feature_draft):
    """After each observe, the rows the drafter feeds its verified positions with are the verifier's own."""
    stages = chain_stages([feature_draft, TARGET])
    draft, target = stages
    prompt = prompts(1)[0]
    for stage in stages:
        stage.reset(prompt)
    target.generate()
    for _ in range(12):
        draft.observe(target.tokens, target.probs, target.features)
        n = len(target.tokens)
        assert draft.tokens == target.tokens and draft.drafter.true_len == n - 1
        assert torch.allclose(draft.drafter.features[:n - 1], target.features[:n - 1])
        for _ in range(3):
            draft.generate()
        target.verify(draft.tokens[n:], [None] * 3)
        assert len(target.features) == len(target.tokens) - 1


def test_a_feature_draft_runs_only_directly_below_its_base(feature_draft, run_cli):
    from pipespec.backend.models import check_feature_drafts

    check_feature_drafts([feature_draft, TARGET], "sd", True)
    for chain, scheme, allowed, words in [([feature_draft, "tiny:2:3:64:16"], "sd", True, "drafts from"),
                                          (["ngram", feature_draft, TARGET], "sd", True, "drafts from"),
                                          ([feature_draft, TARGET], "specpipe", False, "cannot run one")]:
        with pytest.raises(ConfigError, match=words):
            check_feature_drafts(chain, scheme, allowed)
    code, _, err = run_cli("run", "--scheme", "sd", "--chain", feature_draft, "tiny:2:3:64:16", "--limit", "1")
    assert code == 2 and "drafts from tiny:1:3:64:16's hidden states" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["shm", "dist"])  # the hidden states travel on the verifier's second ring
def test_pipespec_with_a_feature_draft_is_the_targets_greedy_output(feature_draft, transport):
    from pipespec.backend.pipeline import PipelineEngine, Placement

    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=48, max_drafts=6)
    target = build_stage(resolve(TARGET), "T", "cpu", 0.0)
    refs = [resolve(feature_draft), resolve(TARGET)]
    with PipelineEngine(refs, [Placement()] * 2, options, transport=transport) as engine:
        for prompt in prompts(3):
            result = engine.decode(prompt)
            assert result.output == decode_ar([target], prompt, options).output
            assert result.stages[0].generate_steps > 0  # it drafted: it got the prompt's hidden states


def test_a_broken_feature_draft_is_a_one_line_error(feature_draft, tmp_path, run_cli):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(feature_draft, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config | {"layer_index": 99}))
    code, _, err = run_cli("run", "--scheme", "sd", "--chain", str(broken), TARGET, "--limit", "1")
    assert code == 2 and "layer_index must be an integer in [0, 3)" in err and "Traceback" not in err
    (broken / "config.json").write_text(json.dumps(config | {"base": "tiny:1:2:64:16"}))  # 2 layers: the head's is 2
    code, _, err = run_cli("run", "--scheme", "sd", "--chain", str(broken), "tiny:1:2:64:16", "--limit", "1")
    assert code == 2 and "layer_index must be" in err
    (broken / "config.json").write_text(json.dumps(config | {"base": "tiny:1:3:32:16"}))  # narrower: shapes differ
    code, _, err = run_cli("run", "--scheme", "sd", "--chain", str(broken), "tiny:1:3:32:16", "--limit", "1")
    assert code == 2 and "is not a feature head for tiny:1:3:32:16" in err and "Traceback" not in err
