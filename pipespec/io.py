"""Result files: written atomically, each carrying its resolved configuration and environment."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(payload: Any) -> str:
    """Strict JSON text (NaN becomes null, numpy scalars become Python numbers)."""
    return json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"


def _file_mode() -> int:
    """What a plain open() would create under the process's umask (mkstemp's own files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), then rename into place: readers never see a half-written file. The file gets
    the mode the user's umask gives new files; a failure names `path`, not the temporary file."""
    from .errors import ConfigError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def read_user_text(path: str | Path, what: str) -> str:
    """A file the user named, as text: a one-line error (naming `what`, e.g. "--prompts x.jsonl") when it is
    missing, unreadable or not UTF-8."""
    from .errors import ConfigError

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from None


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions, threads and hardware that produced a result."""
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "pipespec": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "packages": {n: version(n) for n in ("numpy", "scipy", "sympy", "simpy", "torch", "transformers")},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if var in os.environ:
            env.setdefault("thread_env", {})[var] = os.environ[var]
    if device is not None:
        env["device"] = device
        if device.startswith("cuda"):  # which GPUs: a result names the hardware it was measured on
            import torch

            from .backend.devices import members

            if torch.cuda.is_available():
                env["device_name"] = ", ".join(torch.cuda.get_device_name(torch.device(m)) for m in members(device))
                env["cuda"] = torch.version.cuda
    return env


def result_document(kind: str, config: Any, results: Any, device: str | None = None) -> dict[str, Any]:
    """The standard envelope of every result file."""
    return {"kind": kind, "config": config, "environment": environment(device), "results": results}


def write_json(path: str | Path, payload: Any) -> Path:
    return write_text_atomic(path, to_json(payload))
