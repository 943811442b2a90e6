"""chat4 against chat5 on responses neither learnt from, the comparison chat5's own held-out agreement could
not give (its 5% of 4,096 held out rows chat4 had trained on): the rows past the first 2,048 (chat4's) that
chat5's split held out (`held_out_split` with nothing seen: the split chat5 was trained with).

Needs chat5's checkpoint (`pipespec models build smollm2-chat5` writes it to the cache folder; its weights are
not committed). Greedy agreement is a count, not a timing: the machine's load does not move it.

    .venv/bin/python benchmarks/chat5_clean_held_out.py
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


def main() -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipespec.backend import distill
    from pipespec.backend.draft_data import greedy_agreement, held_out_split, response_examples
    from pipespec.backend.models import target_path
    from pipespec.backend.responses import load_responses

    recipe = distill.RECIPES["smollm2-chat5"]
    state_path = distill.checkpoint_path(recipe)
    if not state_path.is_file():
        print(f"chat5_clean_held_out: no checkpoint at {state_path}: `pipespec models build {recipe.name}`",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(target_path())
    target = AutoModelForCausalLM.from_pretrained(target_path(), dtype=torch.float32).eval()
    ids, mask = response_examples(load_responses()[:recipe.responses], recipe.seq_len, tokenizer.eos_token_id)
    held, _ = held_out_split(recipe.responses, 0, recipe.seed)
    clean = torch.from_numpy(np.sort(held[held >= distill.responses_before(recipe)]))  # past chat4's rows
    student = distill.Student(recipe, target)  # chat4's weights: the draft it starts from

    def agreement() -> dict[str, float]:
        hits, total = greedy_agreement(student, ids, mask, clean, recipe.batch)
        return {"agreement": hits / total, "tokens": total}

    result = {"rows": len(clean), "smollm2-chat4": agreement()}
    state = torch.load(state_path, weights_only=False)
    student.load_state_dict(state["student"], strict=False)
    result[f"smollm2-chat5 (step {state['record']['step']})"] = agreement()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
