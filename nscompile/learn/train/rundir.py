"""A run directory's life: checked, built in a hidden `.NAME.partial` beside it, renamed over it.

The partial directory holds a marker with the run's identity (spec hash, data, seeds, protocol,
baselines) and `.checkpoints`; `prepare` resumes it only for the same identity, and `finish`
swaps it in for RUN_DIR so that a finished RUN_DIR is never half-overwritten.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nscompile.errors import InputError
from nscompile.files import write_atomic

MARKER = ".nscompile-run.json"
CHECKPOINTS = ".checkpoints"


def run_sha256(run_dir: Path) -> str | None:
    """The spec sha256 recorded in a run directory, or None when it is not a run."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        return str(data["spec"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def partial(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.partial"


def prepare(run_dir: Path, identity: dict[str, Any], overwrite: bool, resume: bool) -> Path:
    """Check RUN_DIR and return the working directory to build the run in."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise InputError(f"{run_dir} exists and is not a directory")
        if any(run_dir.iterdir()) and not overwrite:
            recorded = run_sha256(run_dir)
            if recorded != identity["sha256"]:
                what = "a run of another spec" if recorded else "not a training run"
                raise InputError(
                    f"{run_dir} exists and is {what}",
                    hint="choose another directory, or replace it with --overwrite",
                )
    work = partial(run_dir)
    marker = work / MARKER
    if work.exists():
        if resume:
            try:
                saved = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if saved != identity:
                raise InputError(
                    f"the interrupted run in {work} used other settings (spec, data, seeds, "
                    "epochs or baselines)",
                    hint="run with the same arguments, or start over with --overwrite",
                )
            return work
        if not overwrite:
            raise InputError(
                f"an interrupted run of {run_dir} is in {work}",
                hint="continue it with --resume, or start over with --overwrite",
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / CHECKPOINTS).mkdir()
    write_atomic(marker, json.dumps(identity, indent=2) + "\n")
    return work


def finish(work: Path, run_dir: Path) -> None:
    shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
    (work / MARKER).unlink(missing_ok=True)
    old = run_dir.parent / f".{run_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if run_dir.exists():
        run_dir.rename(old)
    work.rename(run_dir)
    if old.exists():
        shutil.rmtree(old)
