"""Training image networks: rows of pixels reshaped by the network, per-channel
standardisation, random-crop augmentation, the plain baselines, and the deployed model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nscompile.compiler.pipeline import compile_text
from nscompile.errors import InputError
from nscompile.lang.parser import parse
from nscompile.lang.unparse import unparse
from nscompile.learn.data import load_table, supervised
from nscompile.learn.deploy import evaluate, load_run
from nscompile.learn.preprocess import Scaler
from nscompile.learn.train import Protocol, train_run
from nscompile.learn.train.core import augment
from nscompile.learn.train.plain import plain_spec

ROOT = Path(__file__).resolve().parent.parent


def load_supervised(source: str):  # noqa: ANN201
    return supervised(load_table(source), None, "auto")


SPEC = """
neuron td { rank 2
    y = <w1, x> + cp(x, 2) + b
}
network digits {
    input 1 x 8 x 8
    conv 4 td relu bn
    block 6 td stride=2
    globalpool
    dense 10
    task classification
}
"""


def test_scaler_standardises_each_channel_over_its_pixels():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(3, 2, (50, 16)), rng.normal(-1, 5, (50, 16))], axis=1)
    scaler = Scaler.fit(x, np.zeros(50), "classification", channels=2)
    assert np.all(scaler.mean[:16] == scaler.mean[0]) and np.all(scaler.std[16:] == scaler.std[16])
    z = scaler.features(x)
    assert abs(z[:, :16].mean()) < 1e-5 and abs(z[:, 16:].std() - 1) < 1e-5


def test_augment_shifts_each_image_within_its_padding():
    generator = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3 * 8 * 8) + 1
    out = augment(images, (3, 8, 8), "crop", generator).reshape(2, 3, 8, 8)
    padded = torch.nn.functional.pad(images.reshape(2, 3, 8, 8), (1, 1, 1, 1))
    for n in range(2):  # every output is one 8 x 8 window of the padded image
        windows = [padded[n, :, i : i + 8, j : j + 8] for i in range(3) for j in range(3)]
        assert any(torch.equal(out[n], w) for w in windows)
    assert augment(images, (3, 8, 8), "none", generator) is images
    flipped = augment(images, (3, 8, 8), "crop+flip", torch.Generator().manual_seed(1))
    assert flipped.shape == images.shape


def test_plain_spec_drops_the_neurons_and_scales_all_but_the_head():
    spec = parse(SPEC)
    text = unparse(plain_spec(spec, "digits", 2.0))
    assert "neuron" not in text and "td" not in text
    assert "conv 8 relu bn" in text and "block 12 stride=2" in text and "dense 10" in text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = load_supervised("sklearn:digits")
    path = tmp_path_factory.mktemp("runs") / "digits"
    protocol = Protocol(epochs=2, patience=5)
    result = train_run(SPEC, "digits.ns", data, path, protocol=protocol,
                       baselines=("plain", "plain-params"))  # fmt: skip
    return result, data


def test_an_image_network_trains_with_its_plain_baselines(run):
    result, _ = run
    models = result.metrics["models"]
    assert set(models) == {"spec", "plain", "plain-params"}
    spec, matched = models["spec"]["parameters"], models["plain-params"]["parameters"]
    assert models["plain"]["parameters"] < spec and abs(matched - spec) / spec < 0.15
    assert models["spec"]["hidden"] == [4, 6]
    assert result.metrics["protocol"]["augment"] == "auto"


def test_the_deployed_model_takes_raw_pixel_rows(run):
    result, _ = run
    model = load_run(result.path)
    evaluation = evaluate(model, load_table("sklearn:digits"))
    assert evaluation.difference < 1e-4  # onnxruntime and torch on the same raw rows
    probs = model.predict_proba("sklearn:digits")
    assert probs.shape == (1797, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_image_networks_refuse_data_of_another_size_and_mlp_baselines(tmp_path):
    small = load_supervised("sklearn:iris")
    with pytest.raises(InputError, match="takes images of 1 x 8 x 8 .64 pixels.; sklearn:iris"):
        train_run(SPEC, "digits.ns", small, tmp_path / "r", protocol=Protocol(epochs=1))
    data = load_supervised("sklearn:digits")
    with pytest.raises(InputError, match="an MLP on its pixels is no baseline"):
        train_run(SPEC, "digits.ns", data, tmp_path / "r", protocol=Protocol(epochs=1),
                  baselines=("mlp",))  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_the_deployed_model_refuses_images_of_another_size(run, tmp_path):
    result, _ = run
    model = load_run(result.path)
    for name, images in (("big", np.zeros((2, 28, 28))), ("rgb", np.zeros((2, 3, 8, 8)))):
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=images.astype(np.float32), labels=np.array([1, 2]))
        with pytest.raises(InputError, match="holds images of .* pixels.; the model takes 64"):
            model.predict(str(path))


def test_plain_spec_of_per_term_batchnorm_keeps_one_batchnorm_per_conv():
    spec = parse((ROOT / "examples" / "images" / "neuronseek_conv.ns").read_text())
    text = unparse(plain_spec(spec, "neuronseek_digits"))
    assert "conv 16 relu bn  #" in text and "bn=" not in text
    compile_text(text, "plain.ns")  # the baseline compiles
