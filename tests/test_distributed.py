"""Data-parallel training under torchrun (`nscompile.learn.train.distributed`).

Two gloo processes on loopback train the network one process trains: the weights after a few
epochs equal the single-process run's up to the order of floating-point sums. Tolerance: the
measured difference is about 3e-8 (float32 weights of size up to about 1, 10 Adam steps); a
sharding mistake (a piece weighted wrongly, a row seen twice or not at all) changes every step
by the order of Adam's step, lr = 1e-3. 1e-5 lies between the two by two orders each way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import SPEC  # the same small iris network

from nscompile.cli.launch import without_nproc
from nscompile.cli.main import main
from nscompile.errors import InputError
from nscompile.learn.train.distributed import Ranks, check_device, start

IMAGES = """
neuron q { y = <w1, x> + <w2, x**2> + b }
network small {
    input 1 x 8 x 8
    conv 4 q relu bn
    block 4 q
    globalpool
    dense 10
    task classification
}
"""
TOLERANCE = 1e-5
TIMEOUT = 240  # seconds a test waits for its processes (each takes a few)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*argv: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={processes}", "-m", "nscompile", *argv,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), check=False
    )


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """The error lines of the ranks' output (not the launcher's traceback)."""
    lines = [line for line in done.stderr.splitlines() if "rror" in line or "what()" in line]
    return "\n".join(lines[-20:])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "weights.pt", weights_only=True)


def _largest_difference(a: Path, b: Path) -> float:
    one, two = _weights(a), _weights(b)
    assert one.keys() == two.keys()
    return max(float((one[k] - two[k]).abs().max()) for k in one)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training run in one process and in two (torchrun, gloo)."""
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "iris.ns").write_text(SPEC)
    common = ["sklearn:iris", "--epochs", "5", "--seeds", "2"]
    assert main(["train", str(folder / "iris.ns"), *common, "-o", str(folder / "one")]) == 0
    done = _torchrun("train", str(folder / "iris.ns"), *common, "-o", str(folder / "two"))
    assert done.returncode == 0, _why(done)
    assert done.stdout.count("test: accuracy") == 1  # rank 0 alone reports
    return folder


def test_two_processes_train_the_weights_one_process_trains(runs: Path) -> None:
    assert _largest_difference(runs / "one", runs / "two") < TOLERANCE


def test_two_processes_report_the_same_metrics(runs: Path) -> None:
    one = json.loads((runs / "one" / "metrics.json").read_text())
    two = json.loads((runs / "two" / "metrics.json").read_text())
    assert one["processes"] == {"count": 1, "device": "cpu"}
    assert two["processes"] == {"count": 2, "device": "cpu"}
    pairs = zip(one["models"]["spec"]["per_seed"], two["models"]["spec"]["per_seed"], strict=True)
    for a, b in pairs:
        assert a["epochs_run"] == b["epochs_run"] and a["best_epoch"] == b["best_epoch"]
        for part in ("train", "val", "test"):
            for key, value in a[part].items():
                assert b[part][key] == pytest.approx(value, abs=TOLERANCE), (part, key)


def test_only_rank_zero_writes(runs: Path) -> None:
    assert sorted(p.name for p in (runs / "two").iterdir()) == sorted(
        p.name for p in (runs / "one").iterdir()
    )
    assert not list(runs.glob(".two*"))  # the partial directory was renamed away


def test_image_network_trains_in_two_processes(tmp_path: Path) -> None:
    (tmp_path / "small.ns").write_text(IMAGES)
    done = _torchrun(
        "train", str(tmp_path / "small.ns"), "images:digits", "--epochs", "2", "-o",
        str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 0, _why(done)
    assert (tmp_path / "run" / "model.onnx").is_file()
    # BatchNorm statistics are rank 0's at every evaluation, so the deployed model is the
    # saved one: `eval` checks onnxruntime against torch on the run's own rows.
    assert main(["eval", str(tmp_path / "run"), "images:digits", "--split", "test"]) == 0


def _workers(parent: int) -> dict[int, int]:
    """{rank: pid} of the nscompile processes torchrun started below `parent`."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        ours = b"RANK" in values and values.get(b"TORCHELASTIC_RUN_ID") and int(stat[1]) != 0
        if ours and _descends(int(entry.name), parent):
            found[int(values[b"RANK"])] = int(entry.name)
    return found


def _descends(pid: int, parent: int) -> bool:
    while pid > 1:
        if pid == parent:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_dead_rank_ends_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    (tmp_path / "iris.ns").write_text(SPEC)
    run = tmp_path / "run"
    argv = ["train", str(tmp_path / "iris.ns"), "sklearn:iris", "--epochs", "120"]
    argv += ["--patience", "120", "-o", str(run)]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "nscompile", *argv, "--nproc", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    checkpoint = tmp_path / ".run.partial" / ".checkpoints" / "spec-seed0.pt"
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint.is_file() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _workers(launcher.pid)
    assert 1 in workers, (workers, launcher.poll())
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=TIMEOUT)  # no hang: rank 0 is stopped too
    assert launcher.returncode == 1
    assert "rank 1 ended by signal SIGKILL" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr, stderr
    assert not run.exists() and checkpoint.is_file()  # nothing half-written in RUN_DIR
    # One process continues what two began, and ends where an uninterrupted run ends.
    assert main([*argv, "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main([*argv[:-1], str(whole)]) == 0
    assert _largest_difference(run, whole) < TOLERANCE


def test_more_processes_than_training_rows_is_refused() -> None:
    with pytest.raises(InputError, match="4 processes but only 3 training rows"):
        Ranks(rank=0, world=4).check(3, 64)
    with pytest.raises(InputError, match="share each batch of 2 rows"):
        Ranks(rank=0, world=4).check(100, 2)
    Ranks(rank=0, world=4).check(4, 4)


def test_pieces_cover_every_row_once() -> None:
    for world in (1, 2, 3, 7):
        for rows in (0, 1, 5, 64, 65):
            pieces = [Ranks(rank=r, world=world).bounds(rows) for r in range(world)]
            covered = [i for lo, hi in pieces for i in range(lo, hi)]
            assert covered == list(range(rows))
            sizes = [hi - lo for lo, hi in pieces]
            assert max(sizes) - min(sizes) <= 1


def test_one_process_shares_and_gathers_without_a_process_group() -> None:
    ranks = start("cpu")
    assert ranks == Ranks() and ranks.main
    assert ranks.share(lambda: 5) == 5
    piece = np.arange(6.0).reshape(3, 2)
    assert ranks.gather(piece, 3) is piece


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError, match="no CUDA device"):
        check_device("cuda")
    (tmp_path / "iris.ns").write_text(SPEC)
    argv = ["train", str(tmp_path / "iris.ns"), "sklearn:iris", "-o", str(tmp_path / "r")]
    for extra in ([], ["--nproc", "2"]):
        assert main([*argv, "--device", "cuda", *extra]) == 1
        assert "no CUDA device" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.ns"]


def test_sync_bn_on_the_cpu_is_refused(tmp_path: Path) -> None:
    (tmp_path / "iris.ns").write_text(SPEC)
    argv = ["train", str(tmp_path / "iris.ns"), "sklearn:iris", "--sync-bn", "-o"]
    launched = subprocess.run(
        [sys.executable, "-m", "nscompile", *argv, str(tmp_path / "r"), "--nproc", "2"],
        capture_output=True, text=True, timeout=TIMEOUT, env=_env(), check=False,
    )  # fmt: skip
    direct = _torchrun(*argv, str(tmp_path / "r"))  # each rank refuses it too
    for done in (launched, direct):
        assert done.returncode == 1
        assert "SyncBatchNorm runs on GPUs only" in done.stderr
    assert "Traceback" not in launched.stderr
    assert not (tmp_path / "r").exists()


def test_nproc_is_dropped_from_the_command_run_again() -> None:
    assert without_nproc(["train", "a", "--nproc", "2", "-o", "r"]) == ["train", "a", "-o", "r"]
    assert without_nproc(["fit", "--nproc=3", "d"]) == ["fit", "d"]


def test_fit_searches_on_rank_zero_and_trains_on_both(tmp_path: Path) -> None:
    done = _torchrun(
        "fit", "sklearn:iris", "--search-epochs", "2", "--epochs", "2", "-o", str(tmp_path / "r")
    )  # fmt: skip
    assert done.returncode == 0, _why(done)
    assert done.stdout.count("structure: pure") == 1  # rank 0 alone reports
    assert (tmp_path / "r" / "spec.ns").is_file() and (tmp_path / "r" / "model.onnx").is_file()
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["processes"]["count"] == 2
