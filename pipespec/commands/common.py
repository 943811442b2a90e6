"""Options every subcommand shares: --json to stdout, --output to a result file."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import require
from ..io import result_document, to_json, write_json


@dataclass(frozen=True)
class OutputConfig:
    json: bool = option(False, "print machine-readable JSON (config, environment, results) to stdout")
    output: str | None = option(None, "also write that JSON atomically to this file", metavar="FILE.json")

    def __post_init__(self) -> None:
        if self.output is not None:
            require(self.output.endswith(".json"), f"--output must name a .json file, got {self.output!r}")


def emit(out: OutputConfig, kind: str, config: dict[str, Any], results: Any, text: str,
         device: str | None = None) -> None:
    """Print `text` (or the JSON document with --json) and write --output if asked."""
    document = result_document(kind, config, results, device)
    if out.output is not None:
        write_json(Path(out.output), document)
    print(to_json(document) if out.json else text, end="" if out.json else "\n")


def subparser(commands: argparse._SubParsersAction, name: str, help: str, description: str,
              examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, description=description,
                               epilog="examples:\n" + examples,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
