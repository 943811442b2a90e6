"""Per-round speculative-decoding logs of other engines, turned into the simulator's own files.

- `records`: the logs as typed values (`RunLog`, `Request`), read from the PipeSpec reference
  implementation's result JSON or from the plain per-round JSONL documented there.
- `replay`: the reference synchronous chain replayed round by round, to recover each pair's agreement
  at every output position from the tokens each verification added.
- `build`: traces merged over runs (with imputation), latency profiles with fitted curves, written as
  `pipespec.acceptance-trace` and `pipespec.latency-profile` files (`pipespec import-logs`).
"""
