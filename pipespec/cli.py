"""The `pipespec` command: subcommands wired to their modules; errors become one line and exit 2."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ConfigError, RunFailed

EPILOG = """\
conventions: α = per-token acceptance rate; γ = drafts per verification; c = t_draft / t_target
(Leviathan et al.; the PipeSpec paper writes the inverse); times are stored in seconds, shown in ms.

examples:
  pipespec reproduce
  pipespec simulate --preset pipespec-a100
  pipespec sweep --preset pipespec-a100 --grid alpha=0.7,0.8,0.9 --output sweep.csv
  pipespec theory --alpha 0.8 --gamma 4 --c 0.1
  pipespec theory --derive --only pipespec
  pipespec theory --alpha 0.6 0.7 0.8 0.9 --gamma 2 4 8 --target-ms 120 --verify-ms 430 --only timing
"""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    from .commands import import_logs, models, plan, profile, reproduce, run, simulate, sweep, theory, validate

    parser = Parser(prog="pipespec", description="How fast will speculative decoding be if I chain these "
                    "models, at this depth, on these devices, and why? Closed forms, simulation and "
                    "measurement of SD, PipeSpec, SpecPipe and PPSD.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pipespec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for module in (theory, simulate, sweep, plan, run, profile, models, validate, reproduce, import_logs):
        module.register(commands)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind through every `finally`, so child processes are stopped too


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"pipespec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output folder that is a file, a read-only path, a full disk
        print(f"pipespec {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"pipespec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pipespec {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def entry_point() -> None:
    sys.exit(main())
