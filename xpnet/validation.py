"""Input checks in the spirit of scikit-learn's ``check_array``: say what was expected and
what was given, before any work starts.

Two kinds live here: the array checks (:func:`check_X`, :func:`check_X_y`) and the one set of
argument validators that the library, the estimators and the command line share
(:func:`check_int`, :func:`check_number`, :func:`check_choice` and their shorthands). Each
validator returns the value in its plain Python type and raises
:class:`InvalidArgumentError`, a ``ValueError`` that also carries what was expected, so the
command line can reword it for an option without a second copy of the rule.

>>> check_number("dropout", 0.5, low=0.0, high=1.0, high_open=True)
0.5
>>> check_positive("lr", -1)
Traceback (most recent call last):
...
xpnet.validation.InvalidArgumentError: xpnet: lr must be a positive finite number, got -1
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backend import namespace_of
from .errors import XpnetError

__all__ = [
    "InvalidArgumentError",
    "check_X",
    "check_X_y",
    "check_choice",
    "check_finite",
    "check_int",
    "check_non_negative",
    "check_non_negative_int",
    "check_number",
    "check_positive",
    "check_positive_int",
]


class InvalidArgumentError(XpnetError, ValueError):
    """An argument outside what it accepts.

    The message reads ``xpnet: NAME must be EXPECTED, got VALUE``; the parts are kept as
    attributes: :attr:`name`, :attr:`expected` (a phrase such as ``"an integer >= 1"``),
    :attr:`value` (what was given) and :attr:`choices` (the valid values, for a choice).
    """

    def __init__(
        self, name: str, expected: str, value: Any, choices: tuple[Any, ...] | None = None
    ) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        self.choices = choices
        super().__init__(f"xpnet: {name} must be {expected}, got {_shown(value)}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The constructor takes the parts, not the message that Exception pickles by default.
        return (type(self), (self.name, self.expected, self.value, self.choices))


def _shown(value: Any) -> str:
    # NumPy 2 scalars repr as np.float64(0.5); the plain number reads better in a message.
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int``, if it is an integer (not a bool, not a float) within bounds.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        What was given.
    minimum, maximum : int, optional
        Inclusive bounds.

    Raises
    ------
    InvalidArgumentError
        If ``value`` is not an integer or lies outside the bounds.
    """
    if minimum is not None and maximum is not None:
        expected = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    elif maximum is not None:
        expected = f"an integer <= {maximum}"
    else:
        expected = "an integer"
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise InvalidArgumentError(name, expected, value)
    return int(value)


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (default 1); see :func:`check_int`."""
    return check_int(name, value, minimum=minimum)


def check_non_negative_int(name: str, value: Any) -> int:
    """An integer >= 0; see :func:`check_int`."""
    return check_int(name, value, minimum=0)


def _range_phrase(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low == 0 and low_open:
        return "a positive finite number"
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return "a finite number"


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` within optional bounds.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        What was given: a real number (Python or NumPy; not a bool, not a string).
    low, high : float, optional
        The bounds; ``None`` leaves that side open-ended.
    low_open, high_open : bool, optional
        Whether the bound itself is excluded (default: both included).

    Raises
    ------
    InvalidArgumentError
        If ``value`` is not a real number, is NaN or infinite, or lies outside the bounds.
    """
    expected = _range_phrase(low, high, low_open, high_open)
    if not _is_real(value):
        raise InvalidArgumentError(name, expected, value)
    number = float(value)
    ok = math.isfinite(number)
    if low is not None:
        ok = ok and (number > low if low_open else number >= low)
    if high is not None:
        ok = ok and (number < high if high_open else number <= high)
    if not ok:
        raise InvalidArgumentError(name, expected, value)
    return number


def check_finite(name: str, value: Any) -> float:
    """Any finite real number; see :func:`check_number`."""
    return check_number(name, value)


def check_positive(name: str, value: Any) -> float:
    """A finite number > 0; see :func:`check_number`."""
    return check_number(name, value, low=0.0, low_open=True)


def check_non_negative(name: str, value: Any) -> float:
    """A finite number >= 0; see :func:`check_number`."""
    return check_number(name, value, low=0.0)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """The one of ``choices`` that ``value`` equals (so a NumPy string comes back a ``str``).

    Raises
    ------
    InvalidArgumentError
        If it equals none of them; the message lists the valid values.
    """
    options = tuple(choices)
    for option in options:
        # The type first: True == 1, and an array would make == ambiguous.
        same_kind = isinstance(value, type(option)) and (
            isinstance(option, bool) or not isinstance(value, bool)
        )
        if same_kind and value == option:
            return option
    raise InvalidArgumentError(
        name, "one of " + ", ".join(map(str, options)), value, choices=options
    )


def check_X(X: Any, n_features: int | None = None, *, name: str = "X") -> np.ndarray | Any:
    """Validate a 2-D numeric feature matrix; return it unchanged (no copy)."""
    if isinstance(X, (list, tuple)):
        X = _from_sequence(X, name)
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"xpnet: {name} must be an array, got {type(X).__name__}")
    if len(shape) != 2:
        raise ValueError(
            f"xpnet: {name} must be 2-D (n_samples, n_features), got shape {tuple(shape)}"
            + ("; reshape a single sample with X.reshape(1, -1)" if len(shape) == 1 else "")
        )
    if shape[0] == 0:
        raise ValueError(f"xpnet: {name} has zero samples; at least one is needed")
    if _is_host(X):
        if X.dtype.kind not in "biuf":
            raise ValueError(f"xpnet: {name} must hold numbers (int or float), got dtype {X.dtype}")
        if X.dtype.kind == "f":
            bad = _count_non_finite(X)
            if bad:
                raise ValueError(f"xpnet: {name} contains {bad} NaN or infinite values")
    else:
        # One read-back per call (fit/evaluate/predict), never per batch.
        xp = namespace_of(X)
        if xp.isdtype(X.dtype, "real floating"):
            if not bool(xp.all(xp.isfinite(X))):
                raise ValueError(f"xpnet: {name} contains NaN or infinite values")
        elif not xp.isdtype(X.dtype, ("integral", "bool")):
            raise ValueError(f"xpnet: {name} must hold numbers (int or float), got dtype {X.dtype}")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"xpnet: {name} has {shape[1]} features but the model's first layer expects "
            f"{n_features}"
        )
    return X


# Elements per chunk of check_X's finiteness test: its bool temporary stays cache-sized
# instead of one as large as X (47 MB for MNIST), which set the peak memory of every fit.
_FINITE_CHUNK = 1 << 18


def _count_non_finite(X: np.ndarray) -> int:
    """The number of NaN and infinite values of a 2-D float array, in chunks of rows."""
    rows = max(1, _FINITE_CHUNK // max(1, X.shape[1]))
    bad = 0
    for start in range(0, X.shape[0], rows):
        chunk = X[start : start + rows]
        bad += chunk.size - int(np.count_nonzero(np.isfinite(chunk)))
    return bad


def _is_host(a: Any) -> bool:
    return isinstance(a, np.ndarray)


def _from_sequence(a: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(a)
    except ValueError as exc:  # ragged nesting
        raise ValueError(f"xpnet: {name} is not a rectangular array ({exc})") from exc


def check_y(y: Any, n_samples: int, n_classes: int | None) -> Any:
    """Validate integer class labels in ``[0, n_classes)`` (or real targets if ``n_classes`` is
    None)."""
    if isinstance(y, (list, tuple)):
        y = _from_sequence(y, "y")
    shape = getattr(y, "shape", None)
    if shape is None:
        raise TypeError(f"xpnet: y must be an array, got {type(y).__name__}")
    if len(shape) not in (1, 2):
        raise ValueError(
            f"xpnet: y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape "
            f"{tuple(shape)}"
        )
    if shape[0] != n_samples:
        raise ValueError(f"xpnet: X has {n_samples} samples but y has {shape[0]}")
    if n_classes is not None and len(shape) == 2 and shape[1] != n_classes:
        raise ValueError(
            f"xpnet: y of shape {tuple(shape)} must be labels (n_samples,) or class "
            f"probabilities (n_samples, {n_classes}) for a model with {n_classes} outputs"
        )
    if not _is_host(y):
        _check_device_y(y, n_classes)
        return y
    if n_classes is not None and y.ndim == 1:
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError("xpnet: y must hold integer class labels, got non-integer values")
        elif y.dtype.kind not in "iu":
            raise ValueError(f"xpnet: y must hold integer class labels, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"xpnet: labels must lie in [0, {n_classes}) for a model with {n_classes} "
                f"outputs, got values from {int(y.min())} to {int(y.max())}"
            )
    elif y.dtype.kind not in "biuf":
        raise ValueError(f"xpnet: y must be numeric, got dtype {y.dtype}")
    elif y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("xpnet: y contains NaN or infinite values")
    return y


def _check_device_y(y: Any, n_classes: int | None) -> None:
    # A handful of read-backs per call, like the host checks; never per batch.
    xp = namespace_of(y)
    if n_classes is not None and y.ndim == 1:
        if not xp.isdtype(y.dtype, "integral"):
            raise ValueError(f"xpnet: y must hold integer class labels, got dtype {y.dtype}")
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"xpnet: labels must lie in [0, {n_classes}) for a model with {n_classes} "
                f"outputs, got values from {lo} to {hi}"
            )
    elif xp.isdtype(y.dtype, "real floating"):
        if not bool(xp.all(xp.isfinite(y))):
            raise ValueError("xpnet: y contains NaN or infinite values")
    elif not xp.isdtype(y.dtype, ("integral", "bool")):
        raise ValueError(f"xpnet: y must be numeric, got dtype {y.dtype}")


def check_X_y(
    X: Any, y: Any, n_features: int | None = None, n_classes: int | None = None
) -> tuple[Any, Any]:
    """Validate features and targets together."""
    X = check_X(X, n_features)
    y = check_y(y, X.shape[0], n_classes)
    return X, y
