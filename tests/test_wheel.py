"""The built wheel works on its own: install it into a fresh environment and compile a spec there.

Builds the wheel from the checkout, installs it with `--no-deps` into a new virtual environment that
reuses the installed dependencies (resolving torch again downloads gigabytes), then runs
that environment's `nscompile` console script from a directory outside the checkout, with a clean
PYTHONPATH, and imports and runs the generated module with that environment's python.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "td.ns"
FALLBACK_SPEC = """\
neuron td {
    rank 8
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
network net {
    input 64
    dense 64 td relu
    dense 1
    task regression
}
"""


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def build_wheel(outdir: Path) -> Path:
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, ROOT], ROOT
    )
    (wheel,) = outdir.glob("nscompile-*.whl")
    return wheel


def make_venv(path: Path) -> Path:
    """A fresh venv that sees the running interpreter's packages but not the checkout."""
    run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", path], path.parent
    )
    python = path / "bin" / "python"
    # --system-site-packages exposes the *base* interpreter's packages; when the tests themselves
    # run in a venv, torch and sympy live in that venv. List its site directories as plain paths:
    # unlike a site directory's, a plain path's .pth files are not run, so an editable install of
    # nscompile (which puts the checkout on sys.path) stays out.
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path)
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib.strip(), "_parent_env.pth").write_text("\n".join(parents) + "\n", encoding="utf-8")
    return python


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home)}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_wheel_installs_and_compiles_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"nscompile/_data/grammar/ns.lark", "nscompile/_data/templates/module.py.jinja"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)

    venv = tmp_path / "venv"
    python = make_venv(venv)
    install = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
    ]
    run([*install, "--disable-pip-version-check", "--quiet", wheel], tmp_path)

    work = tmp_path / "work"
    work.mkdir()
    spec = work / "spec.ns"
    spec.write_text(SPEC.read_text("utf-8") if SPEC.is_file() else FALLBACK_SPEC, "utf-8")
    env = clean_env(venv, tmp_path)
    run([venv / "bin" / "nscompile", "spec.ns", "-o", "model.py"], work, env)
    assert (work / "model.py").is_file()

    probe = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        import nscompile
        import torch

        import model

        assert Path(nscompile.__file__).resolve().is_relative_to({str(venv.resolve())!r}), (
            nscompile.__file__
        )
        assert not any(
            Path(p or ".").resolve() == Path({str(ROOT)!r}) for p in sys.path
        ), sys.path
        torch.manual_seed(0)
        net = model.build()
        x = torch.randn(16, net.in_features)
        y = net(x)
        assert y.shape == (16, net.out_features), y.shape
        assert torch.isfinite(y).all()
        y.sum().backward()
        print("ok", tuple(y.shape))
        """
    )
    assert run([python, "-c", probe], work, env).startswith("ok")
