import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def run_cli(capsys):
    """Run `pipespec ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from pipespec.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors and --help
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
