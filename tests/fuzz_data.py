"""A seeded fuzzer for nscompile's data handling: bad or unusual data files through the CLI.

    PYTHONPATH=. python tests/fuzz_data.py --cases 300 --seed 0 [--train-share 0.12]
        [--work DIR] [--keep] [--verbose]

It mutates two small valid tables (the first 80 rows of examples/data/shop.csv: text columns
and a text target; a seeded numeric regression table) and drives, in this process,

    nscompile train SPEC DATA -o RUN --epochs 2      (a spec of the width the data needs,
                                                      sometimes a wrong one on purpose)
    nscompile fit DATA -o RUN --epochs 2 --search-epochs 2
    nscompile run RUN/model.onnx DATA -o p.csv       (runs trained on the clean tables)
    nscompile eval RUN DATA [--split test] [--target NAME]

The rule checked: a bad input gives a short `error: ...` and exit 1, with no traceback and no
output left behind; a good one exits 0 with finite numbers. Each case ends as one of

    ok, input error, traceback, timeout (over 20 s), nonsense (exit 0 with NaN/inf output, a
    NaN warning, or a bad input accepted), partial output (a failure that left its output),
    unclear error (exit 1 without an `error:` line, or an error running over several lines),
    refused (a good input refused)

Every case that is not ok / input error is kept as a reproducer folder (the data file, the
spec, `cmd.sh`, and the output of the command run again as `python -m nscompile` in a
subprocess with a 60 s timeout) under WORK/failures, which is printed with the counts.
Run it from the repository root with PYTHONPATH set to it (add a folder holding pyarrow to
PYTHONPATH for the Parquet cases). Not a pytest test: 300 cases take about five minutes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import datetime
import gzip
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "data" / "shop.csv"
TIMEOUT = 20
ERROR, OK, ANY = "error", "ok", None  # what a mutation must give


class Timeout(BaseException):
    """Raised by SIGALRM: a BaseException, so that no `except Exception` swallows it."""


@dataclass
class Sheet:
    """A table as text cells plus how it is written out."""

    header: list[str]
    rows: list[list[str]]
    newline: str = "\n"
    encoding: str = "utf-8"
    prefix: bytes = b""
    raw: bytes | None = None  # the whole file, when a mutation writes bytes itself
    suffix: str = ".csv"
    args: list[str] = field(default_factory=list)  # extra command-line options

    def copy(self) -> Sheet:
        return Sheet(
            list(self.header),
            [list(r) for r in self.rows],
            self.newline,
            self.encoding,
            self.prefix,
            self.raw,
            self.suffix,
            list(self.args),
        )

    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=self.newline)
        if self.header:
            writer.writerow(self.header)
        writer.writerows(self.rows)
        return self.prefix + buffer.getvalue().encode(self.encoding, errors="replace")

    def index(self, kind: str) -> int:
        """A random feature column of `kind` (numeric or text), or -1."""
        found = [i for i in range(len(self.header) - 1) if _kind(self, i) == kind]
        return random.choice(found) if found else -1


def _kind(sheet: Sheet, column: int) -> str:
    try:
        for row in sheet.rows:
            float(row[column])
    except (ValueError, IndexError):
        return "text"
    return "numeric"


def shop_sheet(rows: int = 80) -> Sheet:
    with SHOP.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    return Sheet(table[0], table[1 : rows + 1])


def numeric_sheet(rng: random.Random, rows: int = 80) -> Sheet:
    header = ["x0", "x1", "x2", "x3", "y"]
    body = []
    for _ in range(rows):
        x = [rng.uniform(-2, 2) for _ in range(4)]
        y = 2 * x[0] + x[1] * x[2] - x[3] + rng.gauss(0, 0.1)
        body.append([f"{v:.4f}" for v in [*x, y]])
    return Sheet(header, body)


def codes_sheet() -> Sheet:
    """shop with colour 'blue' written '1': a text column with a numeric-looking category."""
    sheet = shop_sheet()
    for row in sheet.rows:
        row[1] = {"blue": "1", "red": "r", "green": "g"}[row[1]]
    return sheet


# ---------------------------------------------------------------- mutations of a whole file
# Each takes (rng, sheet), changes the sheet in place and returns what the CLI must say.

SPECIAL = {
    "nan": ERROR,
    "NaN": ERROR,
    "inf": ERROR,
    "-inf": ERROR,
    "Infinity": ERROR,
    "1e300": ERROR,
    "-1e300": ERROR,
    "1e39": ERROR,
    "3.4e38": ANY,
    "-3.4e38": ANY,
    "-0": OK,
    "1e-320": OK,
    "1e-45": OK,
    "+1": OK,
    " 7 ": OK,
    "1_000": ANY,
    "0x10": ERROR,
    "1e": ERROR,
    "--1": ERROR,
    "\u0661\u0662": ANY,
    "1,5": ERROR,
    "NA": ERROR,
    "?": ERROR,
    "null": ERROR,
}


def m_extra_field(rng, s):
    rng.choice(s.rows).append("1")
    return ERROR


def m_missing_field(rng, s):
    rng.choice(s.rows).pop()
    return ERROR


def m_empty_numeric(rng, s):
    c = s.index("numeric")
    if c < 0:
        return ANY
    rng.choice(s.rows)[c] = ""
    return ERROR


def m_empty_text(rng, s):
    c = s.index("text")
    if c < 0:
        return ANY
    rng.choice(s.rows)[c] = rng.choice(["", " ", "\t"])
    return ERROR


def m_empty_target(rng, s):
    rng.choice(s.rows)[-1] = ""
    return ERROR


def m_special_number(rng, s):
    c = s.index("numeric")
    if c < 0:
        return ANY
    value = rng.choice(sorted(SPECIAL))
    every = rng.random() < 0.3
    for row in s.rows if every else [rng.choice(s.rows)]:
        row[c] = value
    return ANY if every and SPECIAL[value] == OK else SPECIAL[value]


def m_special_target(rng, s):
    value = rng.choice(["nan", "inf", "1e300", "1e39", "3.3e38", "-3.3e38", "1e-320"])
    rng.choice(s.rows)[-1] = value
    return ERROR if value in ("nan", "inf", "1e300", "1e39") else ANY


def m_huge_target_range(rng, s):
    """A regression target (or feature) spanning most of float32's range."""
    c = rng.choice([len(s.header) - 1, s.index("numeric")])
    for row in s.rows:
        row[c] = rng.choice(["3.3e38", "-3.3e38", "1e38", "2.5e38"])
    return ANY


def m_tiny_values(rng, s):
    c = rng.choice([len(s.header) - 1, s.index("numeric")])
    for row in s.rows:
        row[c] = f"{rng.uniform(1, 9):.3f}e-{rng.choice([40, 310, 320])}"
    return ANY


def m_huge_cell(rng, s):
    c = s.index("text")
    size = rng.choice([131_073, 200_000, 100_000])
    rng.choice(s.rows)[max(c, 0)] = "x" * size
    return ERROR if size > 131_072 else ANY


def m_bom(rng, s):
    s.prefix = rng.choice([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe"])
    return OK if s.prefix == b"\xef\xbb\xbf" else ANY


def m_utf16(rng, s):
    s.encoding = "utf-16"
    return ERROR


def m_newlines(rng, s):
    s.newline = rng.choice(["\r\n", "\r", "\n\n", "\r\r\n"])
    return OK if s.newline in ("\r\n", "\n\n") else ANY


def m_latin1(rng, s):
    c = max(s.index("text"), 0)
    rng.choice(s.rows)[c] = "Br\u00e9sil"
    s.encoding = "latin-1"
    return ERROR


def m_nul(rng, s):
    c = rng.randrange(len(s.header))
    row = rng.choice(s.rows)
    row[c] = row[c] + "\x00" if rng.random() < 0.5 else "\x00"
    return ANY


def m_quotes(rng, s):
    data = s.data().decode(s.encoding)
    lines = data.split("\n")
    r = rng.randrange(1, len(lines) - 1)
    choice = rng.randrange(4)
    if choice == 0:  # an unbalanced quote: the rest of the file is one cell
        lines[r] = '"' + lines[r]
    elif choice == 1:  # a quote in the middle of a cell
        lines[r] = lines[r].replace(",", ',a"b', 1)
    elif choice == 2:  # a quoted newline in a text cell
        cells = lines[r].split(",")
        cells[max(s.index("text"), 0)] = '"two\nlines"'
        lines[r] = ",".join(cells)
    else:  # a quoted number
        cells = lines[r].split(",")
        cells[0] = f'"{cells[0]}"'
        lines[r] = ",".join(cells)
    s.raw = "\n".join(lines).encode()
    return ANY


def m_header_names(rng, s):
    choice = rng.randrange(7)
    if choice == 0:
        s.header[1] = s.header[0]
        return ERROR
    if choice == 1:
        s.header[0] = ""
        return ANY
    if choice == 2:
        s.header[0], s.header[1] = " ", "  "
        return ERROR
    if choice == 3:
        s.header[1] = " " + s.header[0] + " "
        return ERROR
    if choice == 4:
        s.header = [str(i + 1) for i in range(len(s.header))]  # a header that reads as data
        return ANY
    if choice == 5:
        s.header[0] = 'a,"b"\nc'
        return OK
    s.header[0] = "h" * 10_000
    return OK


def m_header_only(rng, s):
    s.rows = []
    return ERROR


def m_few_rows(rng, s):
    s.rows = s.rows[: rng.choice([1, 2, 9, 10, 11])]
    return ERROR if len(s.rows) < 10 else ANY


def m_empty_file(rng, s):
    s.raw = rng.choice([b"", b"\n\n\n", b"\xef\xbb\xbf", b" ", b",,,\n,,,\n", b"\x00\x00"])
    return ERROR


def m_one_class(rng, s):
    value = s.rows[0][-1]
    for row in s.rows:
        row[-1] = value
    return ERROR


def m_two_rows_one_class(rng, s):
    for row in s.rows:
        row[-1] = "yes"
    s.rows[-1][-1] = "no"
    return ANY


def m_many_categories(rng, s):
    c = max(s.index("text"), 0)
    count = rng.choice([100, 101, 200])
    while len(s.rows) < count:
        s.rows.append(list(rng.choice(s.rows)))
    for i, row in enumerate(s.rows):
        row[c] = f"cat{i % count}"
    return ERROR if count > 100 else ANY


def m_numeric_categories(rng, s):
    c = max(s.index("text"), 0)
    for row in s.rows:
        if rng.random() < 0.4:
            row[c] = rng.choice(["1", "01", "1.0", "1e0", "-0", "0"])
    return ANY


def m_mixed_column(rng, s):
    c = s.index("numeric")
    if c < 0:
        return ANY
    share = rng.choice([0.05, 0.5, 0.9])
    for row in s.rows:
        if rng.random() < share:
            row[c] = rng.choice(["abc", "n/a", "-", "x"])
    return ANY


def m_unicode(rng, s):
    c = max(s.index("text"), 0)
    names = [
        "caf\u00e9",
        "cafe\u0301",
        "\U0001f600",
        "\u05e9\u05dc\u05d5\u05dd",
        "a\u200bb",
        "\u00a0x",
        "\ufeffy",
    ]
    for row in s.rows:
        row[c] = rng.choice(names)
    return ANY


def m_wide(rng, s):
    extra = rng.choice([500, 2000])
    s.header = [f"w{i}" for i in range(extra)] + s.header
    for row in s.rows:
        row[:0] = [f"{rng.random():.3f}" for _ in range(extra)]
    return ANY


def m_missing_target(rng, s):
    s.args += ["--target", rng.choice(["nope", "", " bought", "BOUGHT", "y "])]
    return ERROR


def m_feature_target(rng, s):
    s.args += ["--target", rng.choice(s.header[:-1])]
    return ANY


def m_task(rng, s):
    s.args += ["--task", rng.choice(["classification", "regression"])]
    return ANY


def m_semicolon(rng, s):
    s.raw = s.data().replace(b",", b";")
    return ERROR


def m_trailing_comma(rng, s):
    s.raw = s.data().replace(b"\n", b",\n")
    return ERROR


def m_blank_lines(rng, s):
    lines = s.data().split(b"\n")
    for _ in range(3):
        lines.insert(rng.randrange(1, len(lines)), rng.choice([b"", b" ", b",", b"\t"]))
    s.raw = b"\n".join(lines)
    return ANY


def m_bool_target(rng, s):
    for row in s.rows:
        row[-1] = rng.choice(["True", "False", "true", "1", "0"])
    return ANY


def m_integer_target(rng, s):
    count = rng.choice([2, 20, 21, 25])
    for i, row in enumerate(s.rows):
        row[-1] = str(rng.choice([i % count, float(i % count), 10**15 + i % count]))
    return ANY


def m_suffix(rng, s):
    s.suffix = rng.choice([".parquet", ".CSV", ".tsv", "", ".csv.gz"])
    if s.suffix == ".csv.gz":
        s.raw = gzip.compress(s.data())
    return ERROR if s.suffix in (".parquet", ".csv.gz") else ANY


def m_parquet(rng, s):
    """The table as Parquet, one column given an unusual Arrow type (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return ANY
    columns = {}
    for c, name in enumerate(s.header):
        cells = [row[c] if c < len(row) else "" for row in s.rows]
        try:
            columns[name] = pa.array([float(v) for v in cells])
        except ValueError:
            columns[name] = pa.array(cells)
    c = rng.randrange(len(s.header))
    n = len(s.rows)
    kinds = {
        "timestamp": lambda: pa.array([datetime.datetime(2020, 1, 1 + i % 28) for i in range(n)]),
        "list": lambda: pa.array([[1.0, float(i)] for i in range(n)]),
        "struct": lambda: pa.array([{"a": i % 3} for i in range(n)]),
        "binary": lambda: pa.array([row[c].encode() for row in s.rows], pa.binary()),
        "bool": lambda: pa.array([i % 2 == 0 for i in range(n)]),
        "null": lambda: pa.nulls(n),
        "dictionary": lambda: pa.array([row[c] for row in s.rows]).dictionary_encode(),
        "string": lambda: pa.array([row[c] for row in s.rows]),
        "stray": lambda: pa.array([row[c] if i else "abc" for i, row in enumerate(s.rows)]),
        "intnull": lambda: pa.array([None if i == 3 else i for i in range(n)], pa.int64()),
        "uint64": lambda: pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
        "none": lambda: pa.array([None if i == 5 else row[c] for i, row in enumerate(s.rows)]),
    }
    kind = rng.choice(sorted(kinds))
    columns[s.header[c]] = kinds[kind]()
    names = list(columns)
    if rng.random() < 0.15:
        names[1] = names[0]  # duplicate names
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(list(columns.values()), names=names), buffer)
    s.raw, s.suffix = buffer.getvalue(), ".parquet"
    s.args.append(f"#parquet:{kind}")
    return ERROR if kind in ("null", "intnull", "none", "stray") or names[1] == names[0] else ANY


def m_constant_features(rng, s):
    for c in range(len(s.header) - 1):
        value = s.rows[0][c]
        for row in s.rows:
            row[c] = value
    return ANY


def m_duplicate_rows(rng, s):
    s.rows = [list(s.rows[0]) for _ in s.rows[:-1]] + [s.rows[-1]]
    return ANY


FILE_MUTATIONS: list[Callable] = [
    m_extra_field,
    m_missing_field,
    m_empty_numeric,
    m_empty_text,
    m_empty_target,
    m_special_number,
    m_special_target,
    m_huge_target_range,
    m_tiny_values,
    m_huge_cell,
    m_bom,
    m_utf16,
    m_newlines,
    m_latin1,
    m_nul,
    m_quotes,
    m_header_names,
    m_header_only,
    m_few_rows,
    m_empty_file,
    m_one_class,
    m_two_rows_one_class,
    m_many_categories,
    m_numeric_categories,
    m_mixed_column,
    m_unicode,
    m_wide,
    m_missing_target,
    m_feature_target,
    m_task,
    m_semicolon,
    m_trailing_comma,
    m_blank_lines,
    m_bool_target,
    m_integer_target,
    m_suffix,
    m_constant_features,
    m_duplicate_rows,
    m_parquet,
    m_parquet,
]
TRAIN_ONLY = {
    m_wide,
    m_one_class,
    m_two_rows_one_class,
    m_task,
    m_constant_features,
    m_duplicate_rows,
    m_integer_target,
    m_bool_target,
    m_many_categories,
}


# ---------------------------------------------------------- mutations of prediction data
# (rng, sheet, base) where base names the run: "shop", "num" or "codes".


def p_unseen_category(rng, s, base):
    c = s.index("text")
    if c < 0:
        return ANY
    rng.choice(s.rows)[c] = rng.choice(["purple", "Blue", "blue ", "BLUE", "2", "1.0", "01"])
    return ANY


def p_missing_column(rng, s, base):
    c = rng.randrange(len(s.header) - 1)
    del s.header[c]
    for row in s.rows:
        del row[c]
    return ERROR


def p_extra_column(rng, s, base):
    s.header.insert(rng.randrange(len(s.header)), rng.choice(["extra", "", "id"]))
    position = s.header.index(next(h for h in s.header if h in ("extra", "", "id")))
    for i, row in enumerate(s.rows):
        row.insert(position, rng.choice([str(i), "t", ""]))
    return ANY


def p_reorder(rng, s, base):
    order = list(range(len(s.header)))
    rng.shuffle(order)
    s.header = [s.header[i] for i in order]
    s.rows = [[row[i] for i in order] for row in s.rows]
    return OK


def p_text_in_numeric(rng, s, base):
    c = s.index("numeric")
    if c < 0:
        return ANY
    words = rng.random() < 0.5
    for row in s.rows if words else [rng.choice(s.rows)]:
        row[c] = rng.choice(["abc", "n/a", "?"])
    return ERROR


def p_drop_target(rng, s, base):
    del s.header[-1]
    for row in s.rows:
        del row[-1]
    return ANY  # fine for run, an error for eval


def p_target_unseen(rng, s, base):
    rng.choice(s.rows)[-1] = rng.choice(["maybe", "2", "yes ", "Yes", "1e5", "-1"])
    return ANY


def p_all_numeric_category(rng, s, base):
    """Every row of the codes run's colour column is the category '1' (the file reads it as
    numbers)."""
    if base != "codes":
        return ANY
    value = rng.choice(["1", "1.0", "01", "1e0"])
    for row in s.rows:
        row[1] = value
    return OK if value == "1" else ANY


def p_few_rows(rng, s, base):
    s.rows = s.rows[: rng.choice([1, 2, 3])]
    return ANY


def p_constant_target(rng, s, base):
    for row in s.rows:
        row[-1] = s.rows[0][-1]
    return ANY


def p_text_target(rng, s, base):
    """The target column as words (a regression run's target must be numbers)."""
    for row in s.rows:
        row[-1] = rng.choice(["a", "b", "yes"])
    return ANY


PREDICT_MUTATIONS: list[Callable] = [
    p_text_target,
    p_unseen_category,
    p_missing_column,
    p_extra_column,
    p_reorder,
    p_text_in_numeric,
    p_drop_target,
    p_target_unseen,
    p_all_numeric_category,
    p_few_rows,
    p_constant_target,
]


# ---------------------------------------------------------------------------- driving


def spec_for(path: Path, args: list[str], rng: random.Random) -> str:
    """A small network of the width, task and classes `path` needs (or a wrong width)."""
    from nscompile.errors import InputError
    from nscompile.learn.data import load_table, supervised

    width, task, outputs = 11, "classification", 2
    with contextlib.suppress(InputError, Exception), _quiet():
        target = args[args.index("--target") + 1] if "--target" in args else None
        chosen = args[args.index("--task") + 1] if "--task" in args else "auto"
        data = supervised(load_table(str(path)), target, chosen)
        width, task = data.features.shape[1], data.task
        outputs = data.classes or 1
    if rng.random() < 0.1:
        width += rng.choice([-1, 1])
    layers = f"    input {width}\n    dense 4 relu\n    dense {outputs}\n    task {task}\n"
    return f"network net {{\n{layers}}}\n"


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _alarm(signum, frame):  # noqa: ANN001, ARG001
    raise Timeout


def call(argv: list[str]) -> tuple[str, int | None, str, list[str]]:
    """nscompile's main in this process: (kind, exit code, stdout+stderr, warnings)."""
    from nscompile.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            try:
                code = main(argv)
                kind = "exit"
            except Timeout:
                code, kind = None, "timeout"
            except SystemExit as exit_:
                code, kind = exit_.code if isinstance(exit_.code, int) else 1, "exit"
            except Exception:  # noqa: BLE001 - what the fuzzer is looking for
                traceback.print_exc(file=err)
                code, kind = None, "traceback"
    finally:
        signal.alarm(0)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return kind, code, out.getvalue() + err.getvalue(), messages


NONFINITE = re.compile(r"(?<![A-Za-z_])(nan|inf|-inf)(?![A-Za-z_])", re.IGNORECASE)


def judge(kind, code, text, caught, expect, output: Path | None) -> str:  # noqa: ANN001
    if kind == "timeout":
        return "timeout"
    if kind == "traceback" or "Traceback (most recent call last)" in text:
        return "traceback"
    if code == 0:
        printed = text + (output.read_text(errors="replace") if output and output.is_file() else "")
        numbers = "\n".join(line for line in printed.splitlines() if not line.startswith("data "))
        if caught or NONFINITE.search(numbers):
            return "nonsense"
        return "nonsense" if expect == ERROR else "ok"
    if output is not None and (
        output.exists() or output.with_name(f".{output.name}.partial").exists()
    ):
        return "partial output"  # the output, or a run's hidden .NAME.partial folder
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if code not in (1, 2) or not any(line.startswith("error:") for line in lines):
        return "unclear error"
    after = lines[[i for i, line in enumerate(lines) if line.startswith("error:")][-1] :]
    if len(after) > 2 or (len(after) == 2 and not after[1].startswith(" = help:")):
        return "unclear error"  # an error message that runs over several lines
    return "refused" if expect == OK else "input error"


@dataclass
class Case:
    number: int
    command: str  # train, fit, run, eval
    mutation: str
    base: str
    expect: str | None
    data: Path
    argv: list[str]
    output: Path | None
    spec: Path | None = None


def write_case(work: Path, number: int, sheet: Sheet) -> Path:
    folder = work / f"case{number:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"data{sheet.suffix}"
    path.write_bytes(sheet.data())
    return path


def make_training_case(rng, work, number, bases) -> Case:  # noqa: ANN001
    base = rng.choice(["shop", "num"])
    sheet = bases[base].copy()
    mutation = rng.choice(FILE_MUTATIONS)
    expect = mutation(rng, sheet)
    sheet.args = [a for a in sheet.args if not a.startswith("#")]
    path = write_case(work, number, sheet)
    run = path.parent / "run"
    if rng.random() < 0.6:
        spec = path.parent / "net.ns"
        spec.write_text(spec_for(path, sheet.args, rng), encoding="utf-8")
        argv = ["train", str(spec), str(path), "-o", str(run), "--epochs", "2", *sheet.args]
        return Case(number, "train", mutation.__name__, base, expect, path, argv, run, spec)
    argv = ["fit", str(path), "-o", str(run), "--epochs", "2", "--search-epochs", "2"]
    return Case(number, "fit", mutation.__name__, base, expect, path, argv + sheet.args, run)


def make_prediction_case(rng, work, number, bases, runs) -> Case:  # noqa: ANN001
    base = rng.choice(sorted(runs))
    sheet = bases[base].copy()
    sheet.args = []
    if rng.random() < 0.6:
        mutation = rng.choice(PREDICT_MUTATIONS)
        expect = mutation(rng, sheet, base)
    else:
        mutation = rng.choice([m for m in FILE_MUTATIONS if m not in TRAIN_ONLY])
        expect = mutation(rng, sheet)
        if mutation is m_few_rows:
            expect = ANY  # too few rows to train on is fine to predict for
    sheet.args = [a for a in sheet.args if not a.startswith("#")]
    path = write_case(work, number, sheet)
    run = runs[base]
    command = rng.choice(["run", "run", "eval", "eval-test", "eval-target"])
    if command == "run":
        output = path.parent / "p.csv"
        argv = ["run", str(run / "model.onnx"), str(path), "-o", str(output)]
        if "--target" in sheet.args:
            expect = ANY
        return Case(number, "run", mutation.__name__, base, expect, path, argv, output)
    argv = ["eval", str(run), str(path), *sheet.args]
    if command == "eval-test":
        argv += ["--split", "test"]
    if command == "eval-target" and "--target" not in sheet.args:
        argv += ["--target", rng.choice(sheet.header or ["x"])]
        expect = ANY
    if mutation is p_drop_target:
        expect = ERROR
    return Case(number, "eval", mutation.__name__, base, expect, path, argv, None)


def reproduce(case: Case, outcome: str, text: str, failures: Path) -> Path:
    """Keep the case under `failures` and run it again as `python -m nscompile`."""
    folder = failures / f"{outcome.replace(' ', '_')}-{case.number:04d}"
    shutil.copytree(
        case.data.parent, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("run", "p.csv")
    )
    argv = [a.replace(str(case.data.parent), str(folder)) for a in case.argv]
    command = [sys.executable, "-m", "nscompile", *argv]
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False
        )
        again = f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    except subprocess.TimeoutExpired:
        again = "timed out after 60 s"
    (folder / "cmd.sh").write_text(
        f"cd {ROOT} && PYTHONPATH={path} python " + " ".join(_quote(a) for a in command[1:]) + "\n"
    )
    (folder / "output.txt").write_text(
        f"mutation {case.mutation} on {case.base}; expected {case.expect}; outcome {outcome}\n"
        f"--- in process:\n{text}\n--- subprocess:\n{again}\n"
    )
    return folder


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[\w./:=+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def signature(text: str) -> str:
    """A traceback's exception line and its last frame in nscompile; else the last line."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    ours = [f"{Path(f).name}:{n}" for f, n in frames if "nscompile" in f]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1][:120] if lines else ""
    return f"{ours[-1] if ours else '?'} {last}"


def train_bases(work: Path, bases: dict[str, Sheet]) -> dict[str, Path]:
    """Runs trained on the clean tables, for the prediction cases."""
    runs = {}
    for base, sheet in bases.items():
        path = work / f"clean_{base}.csv"
        path.write_bytes(sheet.data())
        spec = work / f"clean_{base}.ns"
        spec.write_text(spec_for(path, [], random.Random(1)), encoding="utf-8")
        run = work / f"run_{base}"
        argv = ["train", str(spec), str(path), "-o", str(run), "--epochs", "2", "--overwrite"]
        kind, code, text, _ = call(argv)
        if kind != "exit" or code != 0:
            raise SystemExit(f"cannot train the clean {base} run:\n{text}")
        runs[base] = run
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-share", type=float, default=0.12)
    parser.add_argument("--work", help="folder for the cases (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep every case, not just failures")
    parser.add_argument("--verbose", action="store_true", help="print each case's last line")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    random.seed(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="nscompile-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    failures = work / "failures"
    failures.mkdir(exist_ok=True)
    bases = {
        "shop": shop_sheet(),
        "num": numeric_sheet(random.Random(args.seed)),
        "codes": codes_sheet(),
    }
    runs = train_bases(work, bases)
    counts: collections.Counter[str] = collections.Counter()
    distinct: dict[str, list[str]] = collections.defaultdict(list)
    for number in range(args.cases):
        if rng.random() < args.train_share:
            case = make_training_case(rng, work, number, {k: bases[k] for k in ("shop", "num")})
        else:
            case = make_prediction_case(rng, work, number, bases, runs)
        kind, code, text, caught = call(case.argv)
        outcome = judge(kind, code, text, caught, case.expect, case.output)
        counts[outcome] += 1
        if outcome not in ("ok", "input error"):
            folder = reproduce(
                case, outcome, text + "".join(f"\nwarning: {w}" for w in caught), failures
            )
            key = f"{outcome}: {case.command} {signature(text) if outcome != 'nonsense' else ''}"
            distinct[key].append(f"{folder.name} ({case.mutation}/{case.base})")
        last = text.strip().splitlines()[-1][:150] if text.strip() else ""
        print(
            f"{number:4d} {case.command:5s} {case.base:5s} {case.mutation:22s} {outcome}"
            + (f"  | {last}" if args.verbose else ""),
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(case.data.parent, ignore_errors=True)
    print("\ncounts: " + json.dumps(dict(counts.most_common())))
    for key, where in sorted(distinct.items()):
        print(f"{len(where):3d}x {key}\n      e.g. {', '.join(where[:3])}")
    print(f"reproducers: {failures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
