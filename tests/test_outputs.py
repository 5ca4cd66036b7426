"""Every output location is checked before the work starts: a clear error and
exit 1, never a traceback after a long search or training."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from nscompile.cli.main import main
from nscompile.errors import InputError
from nscompile.files import check_writable

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "examples" / "td.ns")
NOT_WRITABLE = "/proc/nscompile-out"  # procfs accepts no new files, not even root's


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
@pytest.mark.parametrize(
    "args",
    [
        ["run", "MODEL", "sklearn:iris", "-o", f"{NOT_WRITABLE}.csv"],
        ["run", "MODEL", "sklearn:iris", "-o", "/nonexistent/p.csv"],
        ["search", "sklearn:iris", "-o", f"{NOT_WRITABLE}.ns"],
        ["search", "sklearn:iris", "--summary", f"{NOT_WRITABLE}.json"],
        ["search", "sklearn:iris", "--plot", f"{NOT_WRITABLE}.png"],
        ["train", SPEC, "sklearn:iris", "-o", NOT_WRITABLE],
        ["fit", "sklearn:iris", "-o", NOT_WRITABLE],
    ],
    ids=["run-proc", "run-missing-folder", "search", "summary", "plot", "train", "fit"],
)
def test_unwritable_outputs_fail_first(tmp_path: Path, capsys, args: list[str]) -> None:  # noqa: ANN001
    model = tmp_path / "m.onnx"
    assert main([SPEC, "--onnx", str(model)]) == 0
    capsys.readouterr()
    args = [str(model) if a == "MODEL" else a for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


def test_a_folder_without_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root ignores permission bits, so the refusal is simulated where the probe file is made.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match="cannot write .*run: no new file .*Permission denied"):
        check_writable(tmp_path / "run", directory=True)


def test_run_directories_get_their_missing_parents(tmp_path: Path) -> None:
    check_writable(tmp_path / "runs" / "deep" / "run", directory=True)  # created by train
    with pytest.raises(InputError, match="a file is in the way"):
        (tmp_path / "f").write_text("x")
        check_writable(tmp_path / "f", directory=True)
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_compile_writes_no_file_when_another_cannot_be_written(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([SPEC, "-o", str(tmp_path / "m.py"), "--onnx", f"{NOT_WRITABLE}.onnx"]) == 1
    assert main([SPEC, "-o", f"{NOT_WRITABLE}.py", "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert list(tmp_path.iterdir()) == []
    assert "cannot write" in capsys.readouterr().err
