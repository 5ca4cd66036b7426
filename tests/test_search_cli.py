"""`nscompile search` as a user runs it: spec, summary, plot, bad input, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nscompile.compiler.pipeline import front_end


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nscompile", "search", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_search_writes_a_spec_summary_and_plot(tmp_path: Path) -> None:
    result = run(
        "synthetic:pure_v0",
        "--rows",
        "600",
        "--epochs",
        "8",
        "--seeds",
        "2",
        "-o",
        "spec.ns",
        "--summary",
        "s.json",
        "--plot",
        "s.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "spec.ns").read_text()
    front_end(text)  # the written spec compiles
    assert "# data: synthetic:pure_v0" in text
    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary) >= {"pure", "interact", "rank", "agreement", "seconds", "per_seed"}
    assert len(summary["per_seed"]) == 2 and 0 < summary["agreement"] <= 1
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synthetic:pure_v0", "--max-order", "0"], "--max-order 0 is outside 1..9"),
        (["synthetic:pure_v0", "--rank", "5000"], "--rank 5000 is outside 1..4096"),
        (["synthetic:nope"], "pure_v0"),
        (["sklearn:nope"], "diabetes"),
        (["const.csv"], "is constant"),
        (["one.csv", "--task", "classification"], "is constant"),
        (["text.csv"], "column 'b' of text.csv is numeric but for 'x' in line 3"),
        (["nan.csv"], "column 'a' of nan.csv has NaN"),
        (["tiny.csv"], "at least"),
    ],
)
def test_bad_input_exits_1_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    rows = "\n".join(f"{i},{i % 3},1" for i in range(40))
    (tmp_path / "const.csv").write_text("a,b,y\n" + rows)
    (tmp_path / "one.csv").write_text("a,b,y\n" + rows)
    (tmp_path / "text.csv").write_text("a,b,y\n1,2,0\n3,x,1\n4,5,0\n")
    (tmp_path / "nan.csv").write_text("a,b,y\n1,2,0\n,3,1\n")
    (tmp_path / "tiny.csv").write_text("a,y\n1,0\n2,1\n3,0\n")
    result = run(*args, "-o", "spec.ns", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "spec.ns").exists()


def test_interrupted_search_leaves_no_spec(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nscompile",
            "search",
            "synthetic:hybrid_v1",
            "--epochs",
            "500",
            "-o",
            "spec.ns",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A run started in the background (`cmd &` in a script) inherits SIGINT ignored, and
        # Python then never raises KeyboardInterrupt: Ctrl-C is what is tested, so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(10)  # past the imports, inside the search (500 epochs take about a minute)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
