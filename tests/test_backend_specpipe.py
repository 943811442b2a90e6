"""SpecPipe on real (tiny) models: a draft's token tree filling P target stages in separate processes;
lossless whatever the tree and its hit rate, and it stops cleanly when a stage dies."""

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from pipespec.backend.engines import DecodeOptions, decode_ar
from pipespec.backend.layers import TreeSlice
from pipespec.backend.loading import load_model
from pipespec.backend.models import resolve
from pipespec.backend.pipeline import Placement, StageFailed
from pipespec.backend.specpipe import SpecPipeEngine, stage_layers
from pipespec.backend.stages import build_stage

TARGET = "tiny:1:4:64"


def prompts(count=3, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 49152, size=int(rng.integers(6, 30))).tolist() for _ in range(count)]


def test_tree_attention_matches_each_branch_decoded_alone():
    model = load_model(resolve(TARGET), "cpu")
    prefix = prompts(1)[0]
    n = len(prefix)
    tree = TreeSlice(model, range(4), "cpu", embed=True, head=True)
    tree.reset()
    tree.forward_nodes(torch.tensor(prefix), list(range(n)), list(range(-1, n - 1)), list(range(n)))
    # two siblings after the prefix, then a child of the second; prune the first, grow the second's branch
    siblings = tree.logits(tree.forward_nodes(torch.tensor([11, 22]), [100, 101], [n - 1, n - 1], [n, n]))
    child = tree.logits(tree.forward_nodes(torch.tensor([33]), [102], [101], [n + 1]))
    tree.drop({100})
    grandchild = tree.logits(tree.forward_nodes(torch.tensor([44]), [103], [102], [n + 2]))

    def alone(*tokens):
        return model(input_ids=torch.tensor([prefix + list(tokens)])).logits[0, -1]

    for got, want in ((siblings[0], alone(11)), (siblings[1], alone(22)), (child[0], alone(22, 33)),
                      (grandchild[0], alone(22, 33, 44))):
        assert torch.allclose(got, want, atol=1e-4)


def test_stage_layers_split_evenly_and_refuse_empty_stages():
    assert stage_layers(30, 4) == [range(0, 8), range(8, 16), range(16, 23), range(23, 30)]
    with pytest.raises(Exception, match=r"--pp-stages \(5\) must be <= the target's 4 layers"):
        stage_layers(4, 5)


@pytest.mark.slow
@pytest.mark.parametrize("draft, stages, width, depth", [
    ("tiny:1:1:64", 2, 2, None),   # a draft sharing the target's first layer: many hits
    ("tiny:7:1:32", 3, 3, None),   # an unrelated draft: misses and flushes
    ("tiny:1:2:64", 4, 1, 3),      # a chain (width 1), P = 4
    ("tiny:1:1:64", 2, 2, 1),      # depth 1: plain pipeline parallelism
])
def test_specpipe_is_token_for_token_the_targets_greedy_output(draft, stages, width, depth):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=32)
    target = build_stage(resolve(TARGET), "T", "cpu", 0.0)
    placements = [Placement()] * (stages + 1)
    with SpecPipeEngine(resolve(TARGET), resolve(draft), placements, options, width, depth) as engine:
        for prompt in prompts():
            result = engine.decode(prompt)
            assert result.output == decode_ar([target], prompt, options).output
            assert len(result.stages) == stages + 1 and result.pairs[0].accepted <= result.pairs[0].drafted


@pytest.mark.slow
def test_a_killed_specpipe_stage_stops_the_run_within_seconds():
    options = DecodeOptions(max_new_tokens=100_000)
    engine = SpecPipeEngine(resolve(TARGET), resolve("tiny:1:1:64"), [Placement()] * 3, options, capacity=200_100)
    with engine:
        started = time.monotonic()
        os.kill(engine.processes[2].pid, signal.SIGKILL)
        with pytest.raises(StageFailed, match=r"stage 2 .* died"):
            engine.decode(prompts(1)[0])
        assert time.monotonic() - started < 10
    assert [p for p in engine.processes if p.is_alive()] == []


@pytest.mark.parametrize("args, message", [
    (("--pp-stages", "5"), "--pp-stages (5) must be <= the target's 4 layers"),
    (("--pp-stages", "0"), "--pp-stages must be"),
    (("--tree-width", "0"), "--tree-width must be"),
    (("--tree-threshold", "2"), "--tree-threshold must be in [0, 1]"),
    (("--cpus", "0", "1"), "--cpus: give one core set per stage (3)"),
])
def test_bad_splits_and_trees_are_one_line_errors(run_cli, tmp_path, args, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "input_ids": [1, 2, 3]}) + "\n")
    code, _, err = run_cli("run", "--scheme", "specpipe", "--chain", "tiny:1:1:64", TARGET, "--prompts", str(path),
                           *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_token_tree_grows_prunes_and_flushes():
    """The controller's tree: a level is the most probable paths; a decided token that a child guessed makes it
    the root and prunes its siblings' subtrees; a miss flushes the tree to the decided token."""
    from pipespec.backend.specpipe import TokenTree

    tree = TokenTree([5, 6, 7])
    assert (tree.root, tree.frontier) == (2, [2])
    tree.top[2] = ([10, 11, 12], [0.6, 0.3, 0.1])
    first = tree.grow(width=2, threshold=0.0)
    assert [tree.token[n] for n in first] == [10, 11] and [tree.position[n] for n in first] == [3, 3]
    tree.top[first[0]], tree.top[first[1]] = ([20], [0.5]), ([21], [0.9])
    second = tree.grow(width=2, threshold=0.25)  # paths 0.3 (10 → 20) and 0.27 (11 → 21)
    assert [tree.token[n] for n in second] == [20, 21]
    kids, hit, dead = tree.decide(11)
    assert kids == first and hit == first[1] and dead == {first[0], second[0]}
    assert tree.root == first[1] and tree.frontier == [second[1]] and tree.path[second[1]] == pytest.approx(0.9)
    kids, hit, dead = tree.decide(99)  # nobody guessed it: flushed, 99 is the new root one position on
    assert hit is None and dead == {second[1]} and tree.token[tree.root] == 99 and tree.frontier == [tree.root]
    tokens, parents, positions = tree.level([tree.root])
    assert tokens.tolist() == [99] and parents == [first[1]] and positions == [4]
