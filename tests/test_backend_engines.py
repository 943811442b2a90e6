"""Real models (tiny, random, on the target's vocabulary): greedy engines are lossless whatever the
drafts' quality, and speculative sampling keeps the target's distribution."""

import numpy as np
import pytest
import torch
from scipy import stats

from pipespec.backend.decoding import Decoder
from pipespec.backend.engines import DecodeOptions, decode_ar, decode_sd
from pipespec.backend.loading import load_model
from pipespec.backend.models import resolve, tiny_config
from pipespec.backend.ngram import NgramDrafter
from pipespec.backend.stages import FeatureStage, ModelStage, NgramStage, Sampler

torch.set_num_threads(1)
_MODELS: dict = {}


def stage(spec, name, temperature=0.0, seed=0):
    ref = resolve(spec)
    if ref.kind == "ngram":
        return NgramStage(name, NgramDrafter(ref.params[0]))
    if spec not in _MODELS:
        _MODELS[spec] = load_model(ref, "cpu")
    sampler = Sampler(temperature, torch.Generator().manual_seed(seed))
    return ModelStage(name, Decoder(_MODELS[spec], "cpu"), sampler)


def prompts(count=4, length=24):
    rng = np.random.default_rng(0)
    return [rng.integers(3, 49152, size=length).tolist() for _ in range(count)]


TARGET = "tiny:1:3:64"
CHAINS = [
    ["tiny:2:1:32", TARGET],  # an unrelated draft: almost everything rejected
    [TARGET.replace("tiny:1:3", "tiny:1:1"), TARGET],
    ["ngram:2", TARGET],
    ["tiny:3:1:32", "tiny:2:2:32", TARGET],
    ["ngram", "tiny:2:1:32", TARGET],
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: "+".join(c))
@pytest.mark.parametrize(("gamma", "dynamic"), [(1, False), (4, False), (3, True)])
def test_greedy_sd_is_token_for_token_the_targets_greedy_output(chain, gamma, dynamic):
    options = DecodeOptions(max_new_tokens=40, gamma=gamma, dynamic_window=dynamic)
    for prompt in prompts():
        expected = decode_ar([stage(TARGET, "T")], prompt, options).output
        stages = [stage(spec, f"M{i}") for i, spec in enumerate(chain)]
        result = decode_sd(stages, prompt, options)
        assert result.output == expected, f"chain {chain} diverged from the target's greedy output"
        assert len(result.output) == 40
        assert all(p.verifications > 0 for p in result.pairs)


def test_eos_stops_decoding_and_is_kept():
    prompt = prompts(1)[0]
    free = decode_ar([stage(TARGET, "T")], prompt, DecodeOptions(max_new_tokens=30)).output
    eos = free[10]
    options = DecodeOptions(max_new_tokens=30, eos_token_id=eos, gamma=4)
    expected = free[: free.index(eos) + 1]
    assert decode_ar([stage(TARGET, "T")], prompt, options).output == expected
    assert decode_sd([stage("tiny:1:1:64", "D"), stage(TARGET, "T")], prompt, options).output == expected


def test_counters_are_consistent():
    result = decode_sd([stage("tiny:1:1:64", "D"), stage(TARGET, "T")], prompts(1)[0],
                       DecodeOptions(max_new_tokens=40, gamma=4))
    pair = result.pairs[0]
    target = result.stages[1]
    assert pair.verifications == target.verify_steps
    assert sum(pair.tokens_added_histogram.values()) == pair.verifications
    assert sum(k * v for k, v in pair.tokens_added_histogram.items()) == target.tokens_added
    assert target.tokens_added >= 40 and result.ttft_s > 0 and result.elapsed_s >= result.ttft_s


# --- speculative sampling keeps the target's distribution ---------------------------------------

VOCAB = 6


def peaked_model(seed, layers=1, scale=0.5):
    """Untied head with large random weights: distributions that are far from uniform and differ by seed."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(layers, 16, vocab_size=VOCAB)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, scale)
    return model


def exact_two_token_distribution(model, prompt, temperature):
    """P(x1, x2 | prompt) of the target's own sampling, by enumeration."""
    with torch.no_grad():
        p1 = torch.softmax(model(torch.tensor([prompt])).logits[0, -1] / temperature, -1)
        table = np.zeros((VOCAB, VOCAB))
        for x1 in range(VOCAB):
            p2 = torch.softmax(model(torch.tensor([[*prompt, x1]])).logits[0, -1] / temperature, -1)
            table[x1] = (p1[x1] * p2).numpy()
    return table.ravel()


@pytest.mark.slow
@pytest.mark.parametrize("chain_kind", ["draft", "ngram", "three", "feature"])
def test_speculative_sampling_matches_target_distribution(chain_kind):
    from pipespec.backend.eagle import FeatureDraft, FeatureDrafter, FeatureHead

    temperature = 1.0
    target, draft, middle = peaked_model(0, 2), peaked_model(1), peaked_model(2)
    torch.manual_seed(3)
    feature_draft = FeatureDraft(FeatureHead(target), target).eval()  # an untrained head over the target's states
    prompt = [1, 4, 2, 4, 2]
    expected = exact_two_token_distribution(target, prompt, temperature)
    counts = np.zeros(VOCAB * VOCAB)
    generator = torch.Generator().manual_seed(123)
    runs = 2000
    for _ in range(runs):
        def model_stage(model, name, features=False):
            return ModelStage(name, Decoder(model, "cpu", features), Sampler(temperature, generator))

        stages = {"draft": [model_stage(draft, "D")], "ngram": [NgramStage("N", NgramDrafter(2))],
                  "three": [model_stage(draft, "D"), model_stage(middle, "M")],
                  "feature": [FeatureStage("F", FeatureDrafter(feature_draft, "cpu"), Sampler(temperature, generator))]
                  }[chain_kind]
        stages = [*stages, model_stage(target, "T", features=chain_kind == "feature")]
        out = decode_sd(stages, prompt, DecodeOptions(max_new_tokens=2, gamma=2)).output
        counts[out[0] * VOCAB + out[1]] += 1
    mask = expected * runs >= 5  # chi-square needs expected counts >= 5; pool the rest
    observed = np.append(counts[mask], counts[~mask].sum())
    wanted = np.append(expected[mask], expected[~mask].sum()) * runs
    keep = wanted > 0
    _, p_value = stats.chisquare(observed[keep], wanted[keep] * observed.sum() / wanted[keep].sum())
    assert p_value > 1e-3, f"{chain_kind}: SD samples differ from the target's distribution (p = {p_value:.2g})"


def test_sampling_with_a_drafter_that_matches_exactly_accepts_everything():
    target = peaked_model(0, 2)
    generator = torch.Generator().manual_seed(0)
    stages = [ModelStage("D", Decoder(target, "cpu"), Sampler(1.0, generator)),
              ModelStage("T", Decoder(target, "cpu"), Sampler(1.0, generator))]
    result = decode_sd(stages, [1, 2, 3], DecodeOptions(max_new_tokens=30, gamma=4))
    assert result.pairs[0].accepted == result.pairs[0].drafted  # q == p: always accepted


def test_dtype_reaches_every_stage():
    """--dtype bfloat16 loads bfloat16 weights (it used to be recorded and never applied), and the speculative
    schemes stay lossless against the target's own bfloat16 greedy decoding."""
    import torch

    from pipespec.backend.loading import load_model
    from pipespec.backend.models import resolve
    from pipespec.backend.runner import RunConfig, run

    model = load_model(resolve("tiny:3:2"), "cpu", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    outputs = {}
    for scheme, chain, extra in (("ar", ("tiny:3:2",), {}), ("sd", ("tiny:1:2", "tiny:3:2"), {}),
                                 ("pipespec", ("tiny:1:2", "tiny:3:2"), {}),
                                 ("ppsd", ("tiny:3:2",), {"exit_layer": 1})):
        result = run(RunConfig.from_flat(dict(scheme=scheme, chain=chain, limit=2, max_new_tokens=10,
                                              dtype="bfloat16", warmup=0, **extra)))
        outputs[scheme] = [p["output_ids"] for p in result["prompts"]]
    assert outputs["sd"] == outputs["ar"] and outputs["pipespec"] == outputs["ar"] and outputs["ppsd"] == outputs["ar"]
