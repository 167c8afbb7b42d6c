"""Reader for MNIST-like CSV files in the layout of Kaggle's "Digit Recognizer" competition.

The first line is a header. In a training file the first column is ``label`` and the other 784
columns are pixels; in a test file all 784 columns are pixels. (The module is not called
``csv.py`` so that it cannot be mistaken for the standard library module it uses.)
"""

from __future__ import annotations

import csv
import gzip
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np

from xpnet.errors import DataError

__all__ = ["N_PIXELS", "load_csv"]

N_PIXELS = 784


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops the byte-order mark that spreadsheet exports often start with.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_name(header: list[str], j: int) -> str:
    return f"column {j + 1} ({header[j]!r})"


def _locate_parse_error(path: Path, header: list[str], numpy_message: str) -> DataError:
    """Rescan the file slowly to name the first malformed row and cell precisely."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        data_row = 0
        for row in reader:
            # np.loadtxt skips blank lines, so they are not data rows either.
            if not row or all(not cell.strip() for cell in row):
                continue
            data_row += 1
            where = f"{path}: line {reader.line_num} (data row {data_row})"
            if len(row) != len(header):
                return DataError(
                    f"{where}: wrong column count: expected {len(header)} columns like the "
                    f"header, found {len(row)}"
                )
            for j, cell in enumerate(row):
                if not _is_number(cell.strip()):
                    return DataError(
                        f"{where}, {_column_name(header, j)}: non-numeric value {cell!r}"
                    )
    return DataError(f"{path}: cannot parse CSV data: {numpy_message}")


def _loadtxt(path: Path, dtype: type) -> np.ndarray:
    with _open_text(path) as fh, warnings.catch_warnings():
        # A header-only file makes loadtxt warn; the caller reports it as a DataError.
        warnings.simplefilter("ignore", UserWarning)
        return np.loadtxt(
            fh, delimiter=",", skiprows=1, dtype=dtype, ndmin=2, comments=None, quotechar='"'
        )


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    i, j = np.argwhere(mask)[0]
    return int(i), int(j)


def load_csv(
    path: str | os.PathLike[str], *, has_labels: bool | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load an MNIST-like CSV file (Kaggle "Digit Recognizer" layout).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file; a ``.gz`` suffix means gzip-compressed.
    has_labels : bool, optional
        Whether the first column holds labels. By default, it does exactly when the first
        header cell is ``label`` (case-insensitive).

    Returns
    -------
    X : numpy.ndarray
        Pixels, shape ``(n, 784)``: uint8 when every value is an integer in 0..255,
        float32 otherwise (values must still lie in [0, 255]).
    y : numpy.ndarray or None
        int64 labels of shape ``(n,)``, or None for a file without labels.

    Raises
    ------
    DataError
        If the file is empty, has no header row, has the wrong number of columns, holds a
        non-numeric or non-finite cell, a pixel outside 0..255, or a label that is not a
        non-negative integer. The message names the row and column.
    """
    path = Path(path)
    try:
        with _open_text(path) as fh:
            header_line = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV file {path}: {exc}") from exc
    if not header_line:
        raise DataError(f"{path}: empty file: expected a header row and data rows")
    if not header_line.strip():
        raise DataError(f"{path}: no header row: the first line is blank")
    header = next(csv.reader([header_line]))
    header = [cell.strip() for cell in header]
    if all(_is_number(cell) for cell in header):
        raise DataError(
            f"{path}: no header row: the first line holds only numbers; expected column names "
            "such as 'label,pixel0,...,pixel783'"
        )
    labelled = header[0].lower() == "label" if has_labels is None else bool(has_labels)
    expected = N_PIXELS + 1 if labelled else N_PIXELS
    if len(header) != expected:
        layout = "a label column and 784 pixel columns" if labelled else "784 pixel columns"
        raise DataError(
            f"{path}: wrong column count: expected {expected} columns ({layout}), "
            f"found {len(header)} in the header"
        )

    try:
        # Integer parsing is ~6x faster than float parsing, and integer pixels are the norm;
        # anything else (decimals, or a malformed cell) is parsed again as float64.
        data = _loadtxt(path, np.int32)
    except ValueError:
        try:
            data = _loadtxt(path, np.float64)
        except ValueError as exc:
            raise _locate_parse_error(path, header, str(exc)) from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: no data rows after the header")
    if data.shape[1] != expected:
        raise DataError(
            f"{path}: wrong column count: expected {expected} columns, found {data.shape[1]}"
        )

    is_float = data.dtype.kind == "f"
    if is_float and not np.isfinite(data).all():
        i, j = _first_bad(~np.isfinite(data))
        raise DataError(
            f"{path}: data row {i + 1}, {_column_name(header, j)}: non-finite value {data[i, j]}"
        )
    offset = 1 if labelled else 0
    pixels = data[:, offset:]
    out_of_range = (pixels < 0) | (pixels > 255)
    if out_of_range.any():
        i, j = _first_bad(out_of_range)
        raise DataError(
            f"{path}: data row {i + 1}, {_column_name(header, j + offset)}: pixel value "
            f"{pixels[i, j]:g} out of range, expected 0..255"
        )

    y = None
    if labelled:
        labels = data[:, 0]
        bad = labels < 0
        if is_float:
            bad |= labels != np.floor(labels)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: data row {i + 1}, {_column_name(header, 0)}: label {labels[i]:g} is "
                "not a non-negative integer"
            )
        y = labels.astype(np.int64)
    if not is_float or np.array_equal(pixels, np.floor(pixels)):
        X = pixels.astype(np.uint8, order="C")
    else:
        X = pixels.astype(np.float32, order="C")
    return X, y
