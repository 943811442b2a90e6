"""`pipespec models`: the drafts built for the built-in target (list, build)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..errors import check_int, check_positive, require
from .common import subparser


def run_list(args: argparse.Namespace) -> int:
    from ..backend.distill import RECIPES
    from ..backend.models import drafts_dir

    for name, recipe in RECIPES.items():
        built = drafts_dir() / name / "build.json"
        status = "not built"
        if built.is_file():
            record = json.loads(built.read_text())
            last = record["curve"][-1]
            status = f"built: held-out greedy agreement {last.get('agreement', float('nan')):.3f}" + (
                f", α on the built-in prompts {last['alpha_builtin']:.3f}" if "alpha_builtin" in last else "") + \
                f" after {record['step']} steps"
        print(f"draft:{name:18s} {recipe.kind:5s} layers={recipe.layers:<3d} {status}")
    print("ngram[:N]                prompt lookup, model-free (always available)")
    return 0


def _budget_and_out(args: argparse.Namespace, default: Path) -> Path:
    """--minutes, --threads and --out of a long, resumable job, checked; the output folder."""
    if args.minutes is not None:
        check_positive("--minutes", args.minutes)
    if args.threads is not None:
        check_int("--threads", args.threads, 1)
    out = Path(args.out) if args.out else default
    require(not out.exists() or out.is_dir(), f"--out must be a folder, got the file {str(out)!r}")
    return out


def run_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..backend.distill import RECIPES, train
    from ..backend.models import drafts_dir

    names = list(RECIPES) if args.name == "all" else [args.name]
    require(all(n in RECIPES for n in names), f"NAME must be one of {', '.join(RECIPES)} or all, got {args.name!r}")
    if args.steps is not None:
        check_int("--steps", args.steps, 1)
    out = _budget_and_out(args, drafts_dir())

    def progress(items, **kwargs):
        return tqdm(items, file=sys.stderr, disable=None, **kwargs)

    for name in names:
        recipe = RECIPES[name]
        if args.steps is not None:
            pretrain = min(recipe.pretrain_steps, args.steps)
            recipe = dataclasses.replace(recipe, steps=args.steps, pretrain_steps=pretrain)
        record = train(recipe, out, args.minutes, args.threads, progress,
                       log=lambda m: tqdm.write(m, file=sys.stderr))
        done = record["step"] >= recipe.steps
        last = record["curve"][-1]
        scores = ", ".join(f"{label} {last[key]:.3f}" for key, label in (("agreement", "held-out greedy agreement"),
                           ("alpha_builtin", "α on the built-in prompts")) if key in last)
        print(f"{name}: step {record['step']}/{recipe.steps}, {scores}" + (
            f" -> {out / name}" if done else " (checkpointed: run the same command to resume)"))
    return 0


def run_responses(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..backend.responses import Spec, generate, responses_dir

    check_int("--prompts", args.prompts, 1, maximum=100_000)
    check_int("--max-new-tokens", args.max_new_tokens, 1, maximum=2048)
    check_int("--batch", args.batch, 1, maximum=256)
    out = _budget_and_out(args, responses_dir())
    spec = Spec(prompts=args.prompts, max_new_tokens=args.max_new_tokens, batch=args.batch)
    record = generate(spec, out, args.minutes, args.threads,
                      lambda items, **kw: tqdm(items, file=sys.stderr, disable=None, **kw),
                      log=lambda m: tqdm.write(m, file=sys.stderr))
    done = record["prompts_done"] >= args.prompts
    print(f"responses: {record['prompts_done']}/{args.prompts} prompts, {record['tokens_generated']} tokens in "
          f"{record['wall_seconds']:.0f} s -> {out}" + ("" if done else " (run the same command to resume)"))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(commands, "models", help="list or build the drafts for the built-in target",
                       description="Drafts for SmolLM2-135M-Instruct built offline: an early-exit self-draft "
                                   "and a small distilled model, from the Python standard library's sources and "
                                   "(with Debian's python3.11-doc) its documentation. Building is CPU-hours and "
                                   "resumable: interrupt it and run the same command again.",
                       examples="  pipespec models list\n  pipespec models build smollm2-exit8 --minutes 60\n")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="drafts and their measured agreement")
    listing.set_defaults(handler=run_list)
    build = actions.add_parser("build", help="train (or resume) a draft; export it when done")
    build.add_argument("name", metavar="NAME", help="a recipe name, or all")
    build.add_argument("--minutes", type=float, help="stop (checkpointed) after this long")
    build.add_argument("--steps", type=int, help="override the recipe's step budget")
    build.add_argument("--threads", type=int, help="torch threads")
    build.add_argument("--out", help="export folder (default: the repository's models/)")
    build.set_defaults(handler=run_build)
    responses = actions.add_parser("responses", help="the target's own responses to instructions made from the "
                                                     "standard library: the drafts' training set (resumable)")
    responses.add_argument("--prompts", type=int, default=2048, help="instructions to answer (default 2048)")
    responses.add_argument("--max-new-tokens", type=int, default=160, help="longest response (default 160)")
    responses.add_argument("--batch", type=int, default=16, help="responses generated together (default 16)")
    responses.add_argument("--minutes", type=float, help="stop (resumable) after this long")
    responses.add_argument("--threads", type=int, help="torch threads")
    responses.add_argument("--out", help="folder (default: the repository's models/responses/)")
    responses.set_defaults(handler=run_responses)
