"""Weight initializers: their distributions, the default per activation, seed reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.initializers import INITIALIZERS, default_initializer_for, get_initializer
from xpnet.layers import Dense, LeakyReLU, ReLU, Sigmoid, Tanh

FAN_IN, FAN_OUT = 300, 200  # 60,000 draws: sample variance good to ~0.6% (normal), 0.4% (uniform)

# name -> (variance, uniform limit or None for a normal law)
EXPECTED = {
    "he_normal": (2 / FAN_IN, None),
    "he_uniform": (2 / FAN_IN, math.sqrt(6 / FAN_IN)),
    "glorot_normal": (2 / (FAN_IN + FAN_OUT), None),
    "glorot_uniform": (2 / (FAN_IN + FAN_OUT), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "lecun_normal": (1 / FAN_IN, None),
    "lecun_uniform": (1 / FAN_IN, math.sqrt(3 / FAN_IN)),
}
ALIASES = {
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
}


def test_every_initializer_is_covered():
    assert set(INITIALIZERS) == set(EXPECTED) | set(ALIASES) | {"zeros"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_initializer_statistics(name):
    var, limit = EXPECTED[name]
    w = get_initializer(name)(np.random.default_rng(1), FAN_IN, FAN_OUT)
    assert w.shape == (FAN_IN, FAN_OUT)
    assert w.dtype == np.float64
    n = w.size
    # Mean within 5 standard errors of 0, variance within 3% (about 5 standard errors).
    assert abs(w.mean()) < 5 * math.sqrt(var / n)
    assert w.var() == pytest.approx(var, rel=0.03)
    kurtosis = float(np.mean((w - w.mean()) ** 4) / w.var() ** 2)
    if limit is None:
        assert kurtosis == pytest.approx(3.0, abs=0.1)  # Gaussian
        # 60,000 normal draws pass 3.5 sigma ~28 times; a uniform law stops at 1.73 sigma.
        assert np.abs(w).max() > 3.5 * math.sqrt(var)
    else:
        assert kurtosis == pytest.approx(1.8, abs=0.05)  # uniform
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.999 * limit


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_aliases_draw_the_same_numbers(alias, name):
    a = get_initializer(alias)(np.random.default_rng(5), 7, 3)
    b = get_initializer(name)(np.random.default_rng(5), 7, 3)
    np.testing.assert_array_equal(a, b)


def test_zeros():
    w = get_initializer("zeros")(np.random.default_rng(0), 4, 5)
    np.testing.assert_array_equal(w, np.zeros((4, 5)))


def test_names_are_case_insensitive_and_unknown_ones_are_listed():
    assert get_initializer("He_Normal") is get_initializer("he_normal")
    with pytest.raises(ValueError, match="unknown initializer 'orthogonal'") as info:
        get_initializer("orthogonal")
    assert "glorot_uniform" in str(info.value)
    with pytest.raises(ValueError, match="unknown initializer"):
        Dense(3, 4, init="orthogonal")  # refused at construction, not at build


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ("relu", "he_uniform"),
        ("leaky_relu", "he_uniform"),
        ("tanh", "glorot_uniform"),
        ("sigmoid", "glorot_uniform"),
        ("softmax", "glorot_uniform"),
        (None, "glorot_uniform"),
    ],
)
def test_default_initializer_per_activation(activation, expected):
    assert default_initializer_for(activation) == expected


def _first_weights(layers, seed=3):
    model = xpnet.Sequential(layers, dtype="float64", seed=seed)
    return xpnet.to_numpy(model.parameters()[0].data)


LAYER_STACKS = {
    "Dense(relu)": (lambda: [Dense(6, 5, activation="relu")], "he_uniform"),
    "Dense+ReLU": (lambda: [Dense(6, 5), ReLU()], "he_uniform"),
    "Dense+LeakyReLU": (lambda: [Dense(6, 5), LeakyReLU(0.1)], "he_uniform"),
    "Dense(tanh)": (lambda: [Dense(6, 5, activation="tanh")], "glorot_uniform"),
    "Dense+Tanh": (lambda: [Dense(6, 5), Tanh()], "glorot_uniform"),
    "Dense+Sigmoid": (lambda: [Dense(6, 5), Sigmoid()], "glorot_uniform"),
    "Dense": (lambda: [Dense(6, 5)], "glorot_uniform"),
    "Dense(relu, lecun)": (
        lambda: [Dense(6, 5, activation="relu", init="lecun_normal")],
        "lecun_normal",
    ),
}


@pytest.mark.parametrize("stack", sorted(LAYER_STACKS))
def test_dense_in_a_model_uses_the_expected_initializer(backend, stack):
    make_layers, init = LAYER_STACKS[stack]
    # The model's generator is seeded with 3 and the first Dense draws first, so its weights
    # are exactly the initializer's first draw from that seed.
    expected = get_initializer(init)(np.random.default_rng(3), 6, 5)
    np.testing.assert_array_equal(_first_weights(make_layers()), expected)


def test_biases_start_at_zero(backend):
    model = xpnet.Sequential([Dense(3, 4, activation="relu"), Dense(4, 2)], seed=0)
    for b in model.get_weights()[1::2]:
        np.testing.assert_array_equal(b, 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_weights_on_every_backend(backend, dtype):
    def build():
        return xpnet.Sequential(
            [Dense(5, 8, activation="relu"), Dense(8, 8, activation="tanh"), Dense(8, 3)],
            dtype=dtype,
            seed=42,
        )

    here = build().get_weights()
    with xpnet.use_backend("numpy"):
        reference = build().get_weights()
    assert len(here) == len(reference) == 6
    for a, r in zip(here, reference, strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, r)
    different = xpnet.Sequential([Dense(5, 8)], dtype=dtype, seed=43).get_weights()[0]
    assert not np.array_equal(different, here[0])
