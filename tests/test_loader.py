"""`nscompile.load` and `nscompile.learn.loader`: generated source in, a module out."""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

import nscompile
from nscompile.compiler.pipeline import compile_file, to_torch
from nscompile.errors import SpecError
from nscompile.learn import loader

ROOT = Path(__file__).resolve().parent.parent
TD = ROOT / "examples" / "td.ns"
TWO_NETWORKS = """
neuron q {
    y = <w1, x> + <w2, x**2> + b
}
network small {
    input 3
    dense 4 q relu
    dense 1
    task regression
}
network wide {
    input 3
    dense 9 q relu
    dense 2
    task classification
}
"""


def _outputs(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch)


def test_the_package_exports_load_lazily() -> None:
    assert nscompile.load is loader.load
    assert nscompile.LoadedSpec is loader.LoadedSpec


def test_load_builds_what_the_existing_path_builds(tmp_path: Path) -> None:
    td = nscompile.load(TD)
    source = to_torch(compile_file(str(TD)))
    assert td.source == source  # the same text `nscompile td.ns -o model.py` writes
    assert td.networks == ("td_net",) and td.compiled.file == str(TD)
    path = tmp_path / "model.py"
    path.write_text(source, encoding="utf-8")
    written = loader.load_file(path)
    batch = torch.randn(17, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = td.build()
    torch.manual_seed(0)
    reference = written.build("td_net")
    assert type(model).__name__ == type(reference).__name__ == "TdNet"
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    out = _outputs(model, batch)
    assert out.shape == (17, 2)
    assert torch.equal(out, _outputs(reference, batch))
    assert isinstance(td.module.TdLayer(5, 3), torch.nn.Module)  # the generated namespace


def test_load_takes_a_path_string_spec_text_or_an_ast() -> None:
    text = TD.read_text(encoding="utf-8")
    batch = torch.randn(4, 5)
    outputs = []
    for spec in (str(TD), text, compile_file(str(TD)).spec):
        torch.manual_seed(3)
        outputs.append(_outputs(nscompile.load(spec).build("td_net"), batch))
    assert all(torch.equal(outputs[0], other) for other in outputs[1:])


def test_build_names_the_network_when_there_are_several() -> None:
    loaded = nscompile.load(TWO_NETWORKS)
    assert loaded.networks == ("small", "wide")
    assert loaded.build("wide").out_features == 2
    with pytest.raises(ValueError, match="2 networks"):
        loaded.build()
    with pytest.raises(ValueError, match="no network 'other'"):
        loaded.build("other")


def test_bad_specs_raise_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as missing:
        nscompile.load(str(tmp_path / "missing.ns"))
    assert missing.value.code == "E003"
    with pytest.raises(SpecError):
        nscompile.load("neuron broken { y = <w, x> + }")
    with pytest.raises(ValueError, match="spec must be"):
        nscompile.load(42)  # type: ignore[arg-type]


def test_loading_leaves_nothing_behind() -> None:
    before = set(sys.modules)
    temp = Path(tempfile.gettempdir())
    files_before = set(temp.glob("nscompile-*"))
    source = nscompile.load(TWO_NETWORKS.replace("9", "11")).source
    assert loader.load_source(source) is loader.load_source(source)  # cached by content
    assert not {m for m in set(sys.modules) - before if m.startswith("nscompile_generated")}
    assert set(temp.glob("nscompile-*")) == files_before


def test_loading_is_thread_safe(tmp_path: Path) -> None:
    source = nscompile.load(TWO_NETWORKS.replace("9", "13")).source
    path = tmp_path / "model.py"
    path.write_text(source, encoding="utf-8")
    shared, files = [], []

    def work() -> None:
        shared.append(loader.load_source(source))
        files.append(loader.load_file(path))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(m) for m in shared}) == 1  # one module per source
    assert len({m.__name__ for m in files}) == 8  # a fresh, uniquely named module per file load
