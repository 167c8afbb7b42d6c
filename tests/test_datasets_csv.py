"""CSV loader (Kaggle "Digit Recognizer" layout): labelled and unlabelled files, and errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from xpnet.datasets import load_csv
from xpnet.errors import DataError

PIXEL_HEADER = ",".join(f"pixel{i}" for i in range(784))


def _write(path, rows, header):
    lines = [header] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def pixels():
    return np.random.default_rng(0).integers(0, 256, (5, 784))


def test_labelled(tmp_path, pixels):
    labels = np.array([3, 0, 9, 1, 7])
    rows = np.column_stack([labels, pixels])
    X, y = load_csv(_write(tmp_path / "train.csv", rows, "label," + PIXEL_HEADER))
    assert X.dtype == np.uint8 and X.shape == (5, 784) and X.flags.c_contiguous
    assert y.dtype == np.int64
    np.testing.assert_array_equal(X, pixels)
    np.testing.assert_array_equal(y, labels)


def test_unlabelled(tmp_path, pixels):
    X, y = load_csv(_write(tmp_path / "test.csv", pixels, PIXEL_HEADER))
    assert y is None
    assert X.dtype == np.uint8
    np.testing.assert_array_equal(X, pixels)


def test_single_row_bom_crlf_and_blank_lines(tmp_path, pixels):
    text = "\ufeffLabel," + PIXEL_HEADER + "\r\n\r\n4," + ",".join(map(str, pixels[0])) + "\r\n\r\n"
    path = tmp_path / "one.csv"
    path.write_bytes(text.encode("utf-8"))
    X, y = load_csv(path)
    assert X.shape == (1, 784)
    np.testing.assert_array_equal(y, [4])


def test_gzip(tmp_path, pixels):
    plain = _write(tmp_path / "t.csv", pixels, PIXEL_HEADER)
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(load_csv(gz)[0], pixels)


def test_float_pixels_give_float32(tmp_path, pixels):
    values = pixels / 2.0
    X, _ = load_csv(_write(tmp_path / "f.csv", values, PIXEL_HEADER))
    assert X.dtype == np.float32
    np.testing.assert_allclose(X, values)


def test_has_labels_override(tmp_path, pixels):
    rows = np.column_stack([np.arange(5), pixels])
    header = "digit," + PIXEL_HEADER
    path = _write(tmp_path / "x.csv", rows, header)
    with pytest.raises(DataError, match=r"expected 784 columns.*found 785"):
        load_csv(path)
    X, y = load_csv(path, has_labels=True)
    np.testing.assert_array_equal(y, np.arange(5))
    np.testing.assert_array_equal(X, pixels)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_csv(path)


def test_header_only(tmp_path):
    path = _write(tmp_path / "h.csv", [], PIXEL_HEADER)
    with pytest.raises(DataError, match="no data rows"):
        load_csv(path)


def test_no_header(tmp_path, pixels):
    path = _write(tmp_path / "nh.csv", pixels[1:], ",".join(map(str, pixels[0])))
    with pytest.raises(DataError, match="no header row"):
        load_csv(path)


def test_blank_first_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("\n" + PIXEL_HEADER + "\n")
    with pytest.raises(DataError, match="no header row"):
        load_csv(path)


def test_wrong_header_width(tmp_path):
    path = _write(tmp_path / "w.csv", [[0] * 11], "label," + ",".join(f"p{i}" for i in range(10)))
    with pytest.raises(DataError, match=r"expected 785 columns \(a label column.*found 11"):
        load_csv(path)


def test_short_row(tmp_path, pixels):
    rows = [",".join(map(str, pixels[0])), ",".join(map(str, pixels[1][:-1]))]
    path = tmp_path / "s.csv"
    path.write_text(PIXEL_HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 3 \(data row 2\).*expected 784 columns.*found 783"):
        load_csv(path)


def test_non_numeric_cell(tmp_path, pixels):
    cells = [str(v) for v in pixels[2]]
    cells[10] = "abc"
    lines = [",".join(map(str, pixels[0])), ",".join(map(str, pixels[1])), ",".join(cells)]
    path = tmp_path / "n.csv"
    path.write_text("label," + PIXEL_HEADER + "\n" + "\n".join("1," + ln for ln in lines))
    with pytest.raises(
        DataError, match=r"line 4 \(data row 3\), column 12 \('pixel10'\): non-numeric value 'abc'"
    ):
        load_csv(path)


@pytest.mark.parametrize(("value", "shown"), [(256, "256"), (-1, "-1")])
def test_pixel_out_of_range(tmp_path, pixels, value, shown):
    bad = pixels.copy()
    bad[3, 5] = value
    path = _write(tmp_path / "r.csv", bad, PIXEL_HEADER)
    with pytest.raises(
        DataError, match=rf"data row 4, column 6 \('pixel5'\): pixel value {shown} out of range"
    ):
        load_csv(path)


def test_non_finite(tmp_path, pixels):
    bad = pixels.astype(float)
    bad[1, 0] = np.nan
    path = _write(tmp_path / "nan.csv", bad, PIXEL_HEADER)
    with pytest.raises(DataError, match=r"data row 2, column 1 \('pixel0'\): non-finite"):
        load_csv(path)


@pytest.mark.parametrize("label", ["-1", "2.5"])
def test_bad_label(tmp_path, pixels, label):
    lines = ["1," + ",".join(map(str, p)) for p in pixels]
    lines[2] = label + "," + ",".join(map(str, pixels[2]))
    path = tmp_path / "l.csv"
    path.write_text("label," + PIXEL_HEADER + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"data row 3, column 1 \('label'\): label {label} is not"):
        load_csv(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read CSV file"):
        load_csv(tmp_path / "absent.csv")
