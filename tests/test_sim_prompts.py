"""A prompt set simulated as the backend decodes it: each prompt from its own context, its traces
replayed from its own sequence (`--trace-sequence`, `--trace-position`, `simulate_prompts`)."""

import pytest

from pipespec.errors import ConfigError
from pipespec.sim.config import SimConfig
from pipespec.sim.run import simulate, simulate_prompts
from pipespec.traces import load_trace, write_traces


def _traces(tmp_path, sequences):
    path = tmp_path / "t.json"
    write_traces(path, {"a->b": {"draft": "a", "target": "b", "sequences": sequences}})
    return path


def test_a_trace_knows_where_each_prompt_begins(tmp_path):
    trace = load_trace(_traces(tmp_path, [[1, 1], [], [0, 0, 0]]))
    assert trace.starts == (0, 2, 2) and trace.start(2) == 2 and trace.start(3) == 0  # cyclic, like positions


def test_the_chosen_sequence_is_replayed(tmp_path):
    """Sequence 0 always matches, sequence 1 never: SD with γ = 4 accepts every window from the first and
    none from the second."""
    path = _traces(tmp_path, [[1] * 60, [0] * 60])
    base = SimConfig.from_text(scheme="sd", latency=("1", "10"), acceptance=(f"trace:{path}",), gamma=4, num_tokens=50)
    accepted = {k: simulate(base.with_values(trace_sequence=k)).pairs[0].accepted for k in (0, 1)}
    assert accepted[1] == 0 and accepted[0] == 40  # 10 rounds of 4 drafts + a bonus token each
    skipped = simulate(base.with_values(trace_sequence=1, trace_position=55)).pairs[0]
    assert skipped.accepted > 0  # from position 55 of sequence 1 the replay runs on into sequence 0


def test_each_prompt_is_priced_at_its_own_context():
    """AR at 10 ms + 0.1 ms per cached token: prompt k's forwards run over contexts len_k … len_k + n_k - 2
    (its first token is the prefill's), never over the concatenation's growing context."""
    config = SimConfig.from_text(scheme="ar", latency=("affine:10,0,0.1",), acceptance=("1",))
    prompts = [(100, 11), (300, 6)]
    (result,) = simulate_prompts(config, prompts, seeds=1)
    expected_s = sum(10 + 0.1 * (length + i) for length, n in prompts for i in range(n - 1)) / 1e3
    # (within a token of context per forward: the simulator's cache lags its sequence by one token)
    assert result.num_tokens == 15 and result.elapsed_s == pytest.approx(expected_s, rel=0.005)
    one_sequence = simulate(config.with_values(num_tokens=15, prompt_len=200))
    assert one_sequence.ms_per_token > result.ms_per_token  # the concatenation's context keeps growing


def test_bad_trace_options_are_config_errors():
    with pytest.raises(ConfigError, match="--trace-sequence"):
        SimConfig.from_text(trace_sequence=-1)
    with pytest.raises(ConfigError, match="--trace-position"):
        SimConfig.from_text(trace_position=-2)
