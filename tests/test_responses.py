"""The drafts' training set: the target's responses to instructions disjoint from the built-in prompts."""

import torch

from pipespec.backend.draft_data import response_examples
from pipespec.backend.prompts import load_prompts
from pipespec.backend.responses import HeldOut, load_responses


def test_the_committed_response_set_shares_nothing_with_the_builtin_prompts():
    builtin = load_prompts(None)
    held_out = HeldOut(builtin)
    rows = load_responses()
    assert len(rows) >= 64
    assert len({r["id"] for r in rows}) == len(rows)
    overlapping = [r["id"] for r in rows if held_out.overlaps(r["prompt"])]
    assert overlapping == []
    from pipespec.backend.models import load_tokenizer, resolve
    from pipespec.backend.prompts import encode

    tokenizer = load_tokenizer(resolve("smollm2"))
    builtin_ids = {tuple(encode(p, tokenizer)) for p in builtin}
    assert not builtin_ids & {tuple(r["prompt_ids"]) for r in rows}
    # each row's ids are its prompt under the chat template the built-in prompts use
    first = rows[0]
    from pipespec.backend.prompts import Prompt

    assert encode(Prompt(first["id"], first["prompt"]), tokenizer) == first["prompt_ids"]


def test_held_out_catches_a_shared_run_of_words_or_a_named_function():
    builtin = load_prompts(None)
    held_out = HeldOut(builtin)
    assert held_out.overlaps(builtin[0].text)
    words = (builtin[6].text or "").split()
    assert held_out.overlaps("Please rewrite: " + " ".join(words[5:14]))  # 9 consecutive words of a built-in one
    assert held_out.overlaps("Write a Python function `fib(k)` in Rust style.")
    assert not held_out.overlaps("Explain what this Python function does:\n\ndef spam(eggs):\n    return eggs")


def test_response_examples_mark_the_positions_that_predict_a_response_token():
    rows = [{"prompt_ids": [5, 6, 7], "response_ids": [8, 9]},
            {"prompt_ids": [1, 2, 3, 4, 5, 6], "response_ids": [7, 8]}]
    ids, mask = response_examples(rows, 6, pad=0)
    assert ids[0].tolist() == [5, 6, 7, 8, 9, 0]
    assert mask[0].tolist() == [False, False, True, True, False, False]  # positions 2, 3 predict 8, 9
    assert ids[1].tolist() == [3, 4, 5, 6, 7, 8]  # too long: the prompt loses its start
    assert mask[1].tolist() == [False, False, False, True, True, False]
    assert mask.dtype == torch.bool


def test_a_set_grown_by_whole_blocks_keeps_its_prompts_first(monkeypatch):
    from pipespec.backend import responses

    tasks = ["code"] * 60 + ["code-edit"] * 40 + ["summarise"] * 30 + ["prose"] * 6
    monkeypatch.setattr(responses, "candidates", lambda: iter(
        (f"{task}-{i}", task, f"Instruction number {i} about {task}.") for i, task in enumerate(tasks)))
    monkeypatch.setattr(responses, "BLOCK", 40)
    one, two, three = (responses.training_prompts(n) for n in (40, 80, 120))
    assert two[:40] == one and three[:80] == two
    assert len({p.id for p in three}) == 120  # no prompt twice
    # each block draws the built-in mix from what is left: prose runs out after the first (6 in all)
    assert sum(p.task == "prose" for p in one) == 6 and not any(p.task == "prose" for p in three[40:])
    assert sum(p.task == "summarise" for p in two[40:]) >= 8  # its 20% of a block (prose's share goes to the rest)
    assert responses.training_prompts(30) != one[:30]  # a partial block is drawn by its own mix, not a prefix


def test_only_whole_blocks_with_the_same_options_grow():
    from pipespec.backend.responses import BLOCK, Spec, grows

    built = {"prompts": BLOCK, "max_new_tokens": 160, "batch": 16, "seed": 0}
    assert grows(built, Spec(prompts=2 * BLOCK))
    assert grows(built, Spec(prompts=BLOCK + 1))  # the set's own prompts stay the first ones
    assert not grows(built, Spec(prompts=BLOCK))  # the same set: not a growth
    assert not grows(built, Spec(prompts=2 * BLOCK, max_new_tokens=64))
    assert not grows({**built, "prompts": BLOCK - 1}, Spec(prompts=2 * BLOCK))
