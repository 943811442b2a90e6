"""The correlated acceptance model and its maximum-likelihood fits recover known parameters."""

import numpy as np
import pytest

from pipespec.acceptance import Draws, Markov, parse_acceptance
from pipespec.acceptance_fit import fit_bernoulli_histogram, fit_markov_histogram, fit_markov_rounds, rounds_from_bits
from pipespec.errors import ConfigError
from pipespec.metrics import PairStats


def realisation(p11, p01, n, seed):
    model, draws = Markov(p11, p01), Draws(np.random.default_rng(seed))
    return [model.accepted(p, 1, draws) for p in range(n)]


@pytest.mark.parametrize(("p11", "p01"), [(0.9, 0.3), (0.95, 0.6), (0.7, 0.7)])
def test_fit_from_rounds_recovers_parameters(p11, p01):
    bits = realisation(p11, p01, 80_000, seed=1)
    requests = [rounds_from_bits(bits[i:i + 800], 5) for i in range(0, len(bits), 800)]
    fitted = fit_markov_rounds(requests)
    assert fitted.p11 == pytest.approx(p11, abs=0.02) and fitted.p01 == pytest.approx(p01, abs=0.03)


def test_fit_from_histogram_recovers_parameters():
    bits = realisation(0.9, 0.3, 80_000, seed=2)
    histogram = {}
    for _, accepted in rounds_from_bits(bits, 4):
        histogram[accepted + 1] = histogram.get(accepted + 1, 0) + 1
    fitted = fit_markov_histogram(histogram, 4)
    assert fitted.p11 == pytest.approx(0.9, abs=0.03) and fitted.p01 == pytest.approx(0.3, abs=0.05)
    iid = fit_bernoulli_histogram(histogram, 4)
    assert iid.alpha == pytest.approx(fitted.stationary, abs=0.05)


def test_markov_reads_one_realisation():
    """Every window that asks about a position sees the same bit."""
    model, draws = Markov(0.8, 0.4), Draws(np.random.default_rng(3))
    first = model.accepted(10, 8, draws)
    assert model.accepted(10, 8, draws) == first
    assert model.accepted(10 + first, 1, draws) == 0 or first == 8
    assert parse_acceptance("markov:0.8,0.4", "x") == model


@pytest.mark.parametrize("spec", ["markov:0.8", "markov:1.2,0.1", "markov:1,0"])
def test_markov_spec_errors(spec):
    with pytest.raises(ConfigError):
        parse_acceptance(spec, "--acceptance")


def test_fit_input_errors():
    with pytest.raises(ConfigError, match="impossible at window 4"):
        fit_markov_histogram({7: 3}, 4)
    with pytest.raises(ConfigError, match="accepted 3 of 2"):
        fit_markov_rounds([[(2, 3)]])


def test_field_metrics_names():
    pair = PairStats("a->b")
    for drafts, accepted in ((4, 4), (4, 1), (4, 0), (4, 2)):
        pair.record(drafts, accepted)
    metrics = pair.field_metrics()
    assert metrics["draft_acceptance_rate"] == 7 / 16
    assert metrics["mean_acceptance_length"] == 1 + 7 / 4
    assert metrics["per_position_acceptance_rate"] == [3 / 4, 2 / 4, 1 / 4, 1 / 4]
    assert metrics["acceptance_histogram"] == {"0": 1, "1": 1, "2": 1, "4": 1}
