"""Bad input, as a new user and as an adversary would give it, to every command: a one-line error naming the
parameter, exit code 2, no traceback and no file left behind; before any work starts.

Two parts: a table of (argv, a fragment of the expected error), and properties over every option of the
commands' config dataclasses (out-of-range numbers) and every file option (random bytes), so that an option
added without validation fails here."""

from __future__ import annotations

import contextlib
import io
import math
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipespec.cli import main
from pipespec.config import build, option_fields
from pipespec.errors import ConfigError


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def assert_one_line_error(code: int, err: str, fragment: str = "") -> None:
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert fragment in err, f"expected {fragment!r} in {err!r}"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    made = {"bytes": tmp_path / "bytes.bin", "nonutf8": tmp_path / "n.yaml", "points": tmp_path / "points.json",
            "trace": tmp_path / "trace.json", "maybe": tmp_path / "maybe.yaml", "file": tmp_path / "plain"}
    made["bytes"].write_bytes(b"\x00\xff\xfe garbage")
    made["nonutf8"].write_bytes(b"\xff\xfe scheme: sd")
    made["points"].write_text('{"format": "pipespec.latency-profile", "version": 1, "models": {"m": {"points": [1]}}}')
    made["trace"].write_text('{"format": "pipespec.acceptance-trace", "version": 1, "pairs": {"a->b": '
                             '{"draft": "a", "target": "b", "sequences": [[1, 0, 1, 1, 0, 1]]}}}')
    made["maybe"].write_text('timeline: "maybe"\n')
    made["file"].write_text("")
    return made


CASES = [
    # theory
    (["theory", "--c", "inf"], "--c must be >= 0 and finite"),
    (["theory", "--c", "nan"], "--c must be >= 0 and finite"),
    (["theory", "--gamma-max", "1000000000"], "--gamma-max must be an integer in 1..4096"),
    (["theory", "--gamma", "1000000000"], "--gamma must be an integer in 0..4096"),
    (["theory", "--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["theory", "--target-ms", "-3"], "--target-ms must be > 0"),
    # simulate
    (["simulate", "--latency", "inf", "28"], "latency must be > 0 and finite"),
    (["simulate", "--latency", "affine:1,2", "28"], "affine takes A,B,C"),
    (["simulate", "--latency", "profile:{points}", "28"], "a profile point must be an object"),
    (["simulate", "--latency", "profile:{nonutf8}", "28"], "is not UTF-8 text"),
    (["simulate", "--latency", "profile:{bytes}", "28"], "--latency[0]"),
    (["simulate", "--config", "{nonutf8}"], "--config: "),
    (["simulate", "--config", "{maybe}"], "timeline must be true or false"),
    (["simulate", "--gamma", "1000000000", "--scheme", "sd"], "--gamma must be an integer in 1..4096"),
    (["simulate", "--min-drafts", "8", "--max-drafts", "2"], "--min-drafts (8) must be <= --max-drafts (2)"),
    (["simulate", "--names", "a", "a", "a"], "--names must be distinct"),
    (["simulate", "--latency", "1", "10", "--acceptance", "trace:{trace}", "--trace-sequence", "99"],
     "--trace-sequence must be < 1"),
    (["simulate", "--latency", "1", "10", "--trace-sequence", "3"], "give --acceptance trace:FILE"),
    (["simulate", "--preset", "toy", "--trace", "{out}/t.json", "--plot-until-s", "-1", "--plot", "{out}/p.png"],
     "--plot-until-s must be"),
    (["simulate", "--coordination", "handshake"], "argument --coordination: invalid choice"),
    (["simulate", "--acceptance", "markov:0.5"], "markov takes P11,P01"),
    (["simulate", "--output", "{file}/x.json"], "cannot write"),
    # sweep
    (["sweep", "--preset", "toy", "--grid", "head_share=abc", "--output", "{out}/s.csv"], "expected numbers"),
    (["sweep", "--preset", "toy", "--grid", "seed=1", "--grid", "seed=2", "--output", "{out}/s.csv"], "given twice"),
    (["sweep", "--preset", "toy", "--grid", "seed=1", "--scheduler", "x", "--output", "{out}/s.csv"],
     "--scheduler applies only with --engine dask"),
    (["sweep", "--preset", "toy", "--grid", "seed=1", "--engine", "dask", "--scheduler", "notanaddress",
      "--output", "{out}/s.csv"], "--scheduler: cannot reach"),
    (["sweep", "--preset", "toy", "--grid", "gamma=1,2", "--replicates", "0", "--output", "{out}/s.csv"],
     "--replicates must be"),
    # plan
    (["plan", "--preset", "a100", "--acceptance", "M0->bogus=0.5"], "no latency profile for 'bogus'"),
    (["plan", "--profile", "{bytes}"], "latency profile"),
    (["plan", "--preset", "a100", "--traces", "{nonutf8}"], "is not UTF-8 text"),
    # run
    (["run", "--scheme", "ar", "--chain", "ngram", "tiny:1:1:32"], "scheme ar runs the target alone"),
    (["run", "--chain", "ngram", "tiny:1:1:32", "--transport", "mpi"], "--transport: invalid choice"),
    (["run", "--scheme", "sd", "--chain", "ngram", "tiny:1:1:32", "--transport", "dist"],
     "--transport dist applies to the schemes that run one process per stage"),
    (["validate", "--transport", "tcp"], "--transport: invalid choice"),
    (["run", "--chain", "tiny:1:1:32", "tiny:1:1:32", "--temperature", "inf"], "--temperature must be >= 0 and"),
    (["run", "--chain", "tiny:1:0", "tiny:1:1:32"], "tiny needs LAYERS >= 1"),
    (["run", "--chain", "ngram", "tiny:1:1:32", "--device", "cpu,cpu"], "a device group splits a model's layers"),
    (["run", "--chain", "ngram", "tiny:1:1:32", "--device", "cuda:0,cuda:0"], "names each device once"),
    (["run", "--chain", "ngram", "tiny:1:1:32", "--quantize", "nf4"], "--quantize nf4: bitsandbytes quantisation"),
    (["run", "--chain", "ngram", "tiny:1:1:32", "--quantize", "fp4"], "argument --quantize: invalid choice"),
    (["run", "--chain", "tiny:1:1:32:6", "tiny:1:2:32"], "has a vocabulary of 6 tokens"),
    (["run", "--scheme", "sd", "--gamma", "1000000000", "--chain", "tiny:1:1:32", "tiny:1:2:32"],
     "--gamma must be an integer in 1..4096"),
    (["run", "--scheme", "pipespec", "--chain", "tiny:1:1:32", "tiny:1:2:32", "--cpus", "0", "99"],
     "--cpus: core 99 is not one this process may use"),
    (["run", "--scheme", "ppsd", "--chain", "tiny:1:4:32", "--exit-layer", "2", "--exit-draft", "draft:bogus"],
     "--exit-draft: no built draft 'bogus'"),
    (["run", "--chain", "tiny:1:1:32", "tiny:1:1:32", "--prompts", "{nonutf8}"], "--prompts: "),
    (["run", "--chain", "tiny:1:1:32", "tiny:1:1:32", "--dtype", "int4"], "argument --dtype: invalid choice"),
    # profile
    (["profile", "--chain", "tiny:1:1:32", "--threads", "0"], "--threads must be an integer >= 1"),
    (["profile", "--chain", "tiny:1:1:32", "--limit", "0"], "--limit must be an integer >= 1"),
    (["profile", "--chain", "tiny:1:1:32", "--prompts", "{out}/missing.jsonl"], "--prompts: "),
    # validate
    (["validate", "--ppsd-exits", "30", "--out", "{out}/v"], "--ppsd-exits must be an integer in 1..29"),
    (["validate", "--repeats", "0", "--out", "{out}/v"], "--repeats must be an integer >= 1"),
    (["validate", "--target", "tiny:1:4:32", "--out", "{out}/v"], "--target tiny:1:4:32: give --draft"),
    (["validate", "--target", "ngram", "--out", "{out}/v"], "--target must be smollm2, a tiny model or a model folder"),
    (["validate", "--target", "tiny:1:4:32", "--draft", "tiny:2:1:32", "--ppsd-exits", "4", "--out", "{out}/v"],
     "--ppsd-exits must be an integer in 1..3"),
    (["validate", "--target", "tiny:1:4:32", "--draft", "nope", "--out", "{out}/v"], "--draft: 'nope' is not"),
    (["run", "--chain", "tiny:1:4:32-exit:0", "tiny:1:4:32"], "MODEL-exit:E takes a layer count E >= 1"),
    (["run", "--chain", "ngram-exit:2", "tiny:1:4:32"], "an exit is the first layers of smollm2, a tiny model"),
    # reproduce
    (["reproduce", "--out", "{file}"], "--out must be a folder"),
    # models
    (["models", "build", "smollm2-small4", "--minutes", "-1"], "--minutes must be > 0"),
    (["models", "build", "smollm2-small4", "--minutes", "nan"], "--minutes must be > 0"),
    (["models", "build", "smollm2-small4", "--threads", "0"], "--threads must be an integer >= 1"),
    (["models", "build", "smollm2-small4", "--out", "{file}"], "--out must be a folder"),
    (["models", "responses", "--prompts", "0"], "--prompts must be an integer"),
    (["models", "responses", "--batch", "1000"], "--batch must be an integer"),
    (["models", "responses", "--minutes", "nan"], "--minutes must be > 0"),
    (["models", "responses", "--out", "{file}"], "--out must be a folder"),
    (["models", "build", "nonesuch"], "NAME must be one of"),
    # import-logs
    (["import-logs", "reference", "{bytes}", "--out", "{out}/i"], "bytes.bin: not UTF-8 text"),
    (["import-logs", "reference", "{maybe}", "--out", "{out}/i"], "maybe.yaml: not valid JSON"),
    (["import-logs", "jsonl", "{nonutf8}", "--out", "{out}/i"], "not UTF-8"),
    (["import-logs", "reference", "{trace}", "--out", "{out}/i"], "strategy: must be chain or greedy"),
    (["import-logs", "jsonl", "{trace}", "--out", "{file}"], "--out must be a folder"),
]


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_a_one_line_error(tmp_path, files, argv, fragment):
    out = tmp_path / "out"
    out.mkdir()
    values = {**{k: str(v) for k, v in files.items()}, "out": str(out)}
    argv = [a.format(**values) for a in argv]
    before = set(tmp_path.rglob("*"))
    code, err = cli(*argv)
    assert_one_line_error(code, err, fragment)
    assert set(tmp_path.rglob("*")) == before, "a file was left behind"


def _config_classes() -> list[type]:
    from pipespec.backend.runner import RunConfig
    from pipespec.commands.profile import ProfileConfig
    from pipespec.commands.theory import TheoryConfig
    from pipespec.commands.validate import ValidateConfig
    from pipespec.sim.config import SimConfig

    return [SimConfig, TheoryConfig, RunConfig, ProfileConfig, ValidateConfig]


def _numeric_fields() -> list[tuple[type, str, type]]:
    """Every numeric option each command takes, its schemes' own included (pipespec.config.option_fields)."""
    out = []
    for cls in _config_classes():
        for name, (_, annotation, _, _) in option_fields(cls).items():
            args = typing.get_args(annotation) or (annotation,)
            scalar = next((a for a in args if a in (int, float)), None)
            if typing.get_origin(annotation) is tuple:
                scalar = args[0] if args[0] in (int, float) else None
            if scalar is not None and annotation is not bool:
                out.append((cls, name, scalar))
    return out


NUMERIC = _numeric_fields()


@pytest.mark.parametrize(("cls", "name", "scalar"), NUMERIC, ids=[f"{c.__name__}.{n}" for c, n, _ in NUMERIC])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_numeric_option_rejects_out_of_range_values(cls, name, scalar, data):
    """Every numeric option of every command is bounded below by 0 at least: a negative number, NaN or an
    infinity must be a ConfigError naming it (no other exception, and never accepted)."""
    bad = data.draw(st.one_of(st.integers(max_value=-1), st.just(-1))
                    if scalar is int else
                    st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.just(math.nan), st.just(math.inf),
                              st.just(-math.inf)))
    field, _, owners, _ = option_fields(cls)[name]
    value = (bad,) if isinstance(field.default, tuple) else bad
    kwargs = {name: value}
    if cls.__name__ == "TheoryConfig" and name == "verify_ms":
        kwargs["target_ms"] = 100.0
    if owners:  # a scheme's own option: given to that scheme
        kwargs["scheme"] = owners[0]
    with pytest.raises(ConfigError) as info:
        build(cls, kwargs)
    flag = name.replace("_", "-")
    assert flag in str(info.value) or name in str(info.value), f"{cls.__name__}.{name}: {info.value}"


FILE_OPTIONS = [
    ["simulate", "--config", "{f}"],
    ["simulate", "--latency", "profile:{f}", "28"],
    ["simulate", "--latency", "1", "10", "--acceptance", "trace:{f}"],
    ["plan", "--profile", "{f}"],
    ["plan", "--preset", "a100", "--traces", "{f}"],
    ["run", "--chain", "tiny:1:1:32", "tiny:1:1:32", "--prompts", "{f}", "--max-new-tokens", "2"],
    ["profile", "--chain", "tiny:1:1:32", "--prompts", "{f}", "--traces", "{f}.out.json", "--output", "{f}.p.json"],
    ["import-logs", "reference", "{f}", "--out", "{f}.out"],
    ["import-logs", "jsonl", "{f}", "--out", "{f}.out"],
]


@pytest.mark.parametrize("argv", FILE_OPTIONS, ids=[" ".join(a[:3]) for a in FILE_OPTIONS])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200))
def test_every_file_option_survives_random_bytes(tmp_path, argv, content):
    """Random bytes (often not UTF-8, never a valid file of its kind): one line, exit 2, nothing written."""
    path = tmp_path / f"f{abs(hash(content)) % 10**8}.json"
    path.write_bytes(content)
    before = set(tmp_path.iterdir())
    code, err = cli(*[a.format(f=path) for a in argv])
    if argv[0] == "run" and code == 0:  # random bytes that happen to parse as prompts: run on them, fine
        return
    assert_one_line_error(code, err)
    assert set(tmp_path.iterdir()) == before, "a file was left behind"
