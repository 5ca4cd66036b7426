"""Fused storage in generated layers: the stored parameters and the per-term state dict.

A layer stores each group of parameters its forward uses side by side as one parameter
(`_fused0`, ...) and shows the members as views; its state dict keeps the per-term keys. These
tests use the state dict as a user does: save, load, partial loads, wrong shapes, missing keys.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from helpers import compile_and_import

from nscompile.compiler.pipeline import compile_file, to_torch_unfused
from nscompile.learn.loader import load_source

ROOT = Path(__file__).resolve().parent.parent
TD = ROOT / "examples" / "td.ns"


@pytest.fixture(scope="module")
def modules():  # noqa: ANN201
    _, generated = compile_and_import(TD.read_text(), "td.ns")
    unfused = load_source(to_torch_unfused(compile_file(str(TD))))
    return generated, unfused


def test_members_are_views_of_the_stored_parameter(modules) -> None:  # noqa: ANN001
    generated, _ = modules
    layer = generated.build().layer1
    names = [name for name, _ in layer.named_parameters()]
    assert names == ["_fused0", "_fused1", "bias"]
    assert layer.cp2_u1.data_ptr() == layer._fused1.data_ptr()  # the first columns
    assert torch.equal(layer.w1, layer._fused0[: layer.in_features].T)
    with torch.no_grad():
        layer._fused1[:, 0] = 7.0
    assert bool((layer.cp2_u1[:, 0] == 7.0).all())


def test_state_dict_has_the_unfused_keys_in_order(modules) -> None:  # noqa: ANN001
    generated, unfused = modules
    model, reference = generated.build(), unfused.build()
    assert list(model.state_dict()) == list(reference.state_dict())
    assert all(model.state_dict()[k].shape == v.shape for k, v in reference.state_dict().items())
    # torch's own tools (export, tracing) read keep_vars=True: they see the real parameters.
    assert "layer1._fused0" in model.state_dict(keep_vars=True)


def test_weights_round_trip_through_a_file_and_the_unfused_compile(modules) -> None:  # noqa: ANN001
    generated, unfused = modules
    torch.manual_seed(1)
    model = generated.build()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = generated.build()
    other.load_state_dict(torch.load(buffer))
    reference = unfused.build()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(7, 5)
    with torch.no_grad():
        assert torch.equal(model(x), other(x))
        torch.testing.assert_close(model(x), reference(x))
    back = generated.build()
    back.load_state_dict(reference.state_dict())  # older, per-term weights load too
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_a_wrong_shape_is_torchs_size_mismatch(modules) -> None:  # noqa: ANN001
    generated, _ = modules
    model = generated.build()
    state = model.state_dict()
    state["layer1.cp2_u1"] = torch.zeros(3, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for layer1\.cp2_u1"):
        model.load_state_dict(state)


def test_missing_members_are_missing_keys(modules) -> None:  # noqa: ANN001
    generated, _ = modules
    model = generated.build()
    state = dict(model.state_dict())
    del state["layer2.cp3_a"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*layer2\.cp3_a"):
        model.load_state_dict(state)
    partial = {"layer1.cp2_u2": torch.full_like(model.layer1.cp2_u2, 3.0)}
    result = model.load_state_dict(partial, strict=False)
    assert "layer1.cp2_u1" in result.missing_keys and not result.unexpected_keys
    assert bool((model.layer1.cp2_u2 == 3.0).all())


def test_a_checkpoint_of_another_layout_is_a_clear_error(tmp_path: Path) -> None:
    """A run checkpointed before its layers stored parameters fused (or of another network)
    does not resume into a traceback: the optimizer's state follows the parameters."""
    from nscompile.errors import InputError
    from nscompile.learn.train.checkpoint import (
        Optimiser,
        TrainingState,
        load,
        resume,
        save_checkpoint,
    )

    def optimiser(model: torch.nn.Module) -> Optimiser:
        adam = torch.optim.Adam(model.parameters())
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=3)
        return Optimiser(adam, schedule, torch.Generator().manual_seed(0))

    old = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = optimiser(old)
    old(torch.randn(5, 4)).sum().backward()
    opt.optimizer.step()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, old, opt, TrainingState({"train_loss": []}, old.state_dict()))
    new = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 3))
    with pytest.raises(InputError, match="does not fit this network") as caught:
        resume(load(path), path, new, optimiser(new))
    assert "without --resume" in (caught.value.hint or "")
