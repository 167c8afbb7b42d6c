"""Sequential's construction, pinned by value: the spellings of a dtype, the attributes a new
model starts with, the generator it hands its dropout layers, and which initializer each Dense
gets from the layer after it.

Written against the mutants mutation testing left alive (docs/testing.md); no training here.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense, Dropout, ReLU, Tanh

xps = pytest.importorskip("array_api_strict")


@pytest.mark.parametrize(
    "dtype", ["float64", np.float64, np.dtype("float64"), xps.float64], ids=repr
)
def test_each_spelling_of_a_dtype_gives_its_name(dtype):
    assert xpnet.Sequential(dtype=dtype).dtype == "float64"


def test_an_unknown_dtype_is_refused_by_name():
    with pytest.raises(ValueError) as info:
        xpnet.Sequential(dtype=np.float16)
    assert str(info.value) == (
        "xpnet: dtype must be one of float32, float64, got <class 'numpy.float16'>"
    )


def test_a_new_model_starts_empty_and_untrained():
    model = xpnet.Sequential()
    assert model.dtype == "float32"
    assert model.layers == [] and model.n_outputs is None
    assert model.seed is None
    assert model.loss is None and model.optimizer is None and model.history is None
    assert model.stop_training is False
    assert xpnet.Sequential(seed=7).seed == 7


def test_the_backend_is_the_one_given_or_the_active_one():
    with xpnet.use_backend("array_api_strict"):
        assert xpnet.Sequential().backend.name == "array_api_strict"
        assert xpnet.Sequential(backend="numpy").backend.name == "numpy"
    with xpnet.use_backend("numpy"):
        assert xpnet.Sequential().backend.name == "numpy"
        assert xpnet.Sequential(backend="array_api_strict").backend.name == "array_api_strict"


def test_a_seeded_model_draws_the_same_weights_every_time():
    a = xpnet.Sequential([Dense(3, 2)], seed=4, backend="numpy").get_weights()
    b = xpnet.Sequential([Dense(3, 2)], seed=4, backend="numpy").get_weights()
    np.testing.assert_array_equal(a[0], b[0])


def test_a_dropout_layer_gets_the_models_generator():
    layer = Dropout(0.5)
    model = xpnet.Sequential([Dense(3, 4), layer], dtype="float64", seed=0, backend="numpy")
    assert layer.rng is not None
    x = model.backend.asarray(np.ones((8, 3)), dtype="float64")
    out = np.asarray(model.forward(x, training=True))  # no key set: the layer draws a seed
    assert out.shape == (8, 4)


def test_each_dense_gets_the_initializer_of_the_activation_after_it():
    """He for a Dense before a ReLU, Glorot before a Tanh and at the end; drawn in order
    from the model's generator, as the explicit initializers are."""
    auto = xpnet.Sequential(
        [Dense(4, 3), ReLU(), Dense(3, 3), Tanh(), Dense(3, 2)], seed=0, backend="numpy"
    )
    explicit = xpnet.Sequential(
        [
            Dense(4, 3, init="he_uniform"),
            ReLU(),
            Dense(3, 3, init="glorot_uniform"),
            Tanh(),
            Dense(3, 2, init="glorot_uniform"),
        ],
        seed=0,
        backend="numpy",
    )
    for got, want in zip(auto.get_weights(), explicit.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(auto.parameters()) == 6


def test_layers_added_after_the_first_use_are_built_too():
    model = xpnet.Sequential([Dense(3, 4)], seed=0, backend="numpy")
    assert len(model.parameters()) == 2
    model.add(ReLU()).add(Dense(4, 2))
    assert [p.shape for p in model.parameters()] == [(3, 4), (4,), (4, 2), (2,)]
    buf = model.parameters()[0].buffer
    assert buf is not None and buf.holds(model.parameters())


def test_add_checks_the_layer_and_the_width():
    model = xpnet.Sequential([Dense(3, 4)])
    with pytest.raises(TypeError, match=r"Sequential\.add expects a Layer, got int"):
        model.add(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expects 5 inputs but the previous layers output 4"):
        model.add(Dense(5, 2))
    model.add(Dense(4, 2))
    assert model.n_outputs == 2 and len(model.layers) == 2
    first = xpnet.Sequential()
    first.add(Dense(7, 1))  # nothing before it: any width is fine
    assert first.n_features_in == 7


class _NestedName:
    """A dtype of some array library that prints with its module path, as
    array_api_strict's ``array_api_strict.float64`` does, one package level deeper."""

    def __str__(self) -> str:
        return "mylib.dtypes.float64"


def test_a_dtype_is_read_by_the_last_part_of_its_dotted_name():
    assert xpnet.Sequential(dtype=_NestedName()).dtype == "float64"


def test_the_dense_before_a_final_activation_gets_its_initializer():
    auto = xpnet.Sequential([Dense(4, 3), ReLU()], seed=0, backend="numpy")
    explicit = xpnet.Sequential([Dense(4, 3, init="he_uniform"), ReLU()], seed=0, backend="numpy")
    np.testing.assert_array_equal(auto.get_weights()[0], explicit.get_weights()[0])


def test_only_activation_layers_choose_the_initializer():
    """A user layer may carry a ``name`` (Keras layers do); it is not an activation."""

    class Named(xpnet.layers.Layer):
        kind = "TestNamed"
        name = "relu"

        def forward(self, x, training=False):
            return x

    auto = xpnet.Sequential([Dense(4, 3), Named()], seed=0, backend="numpy")
    explicit = xpnet.Sequential([Dense(4, 3, init="glorot_uniform")], seed=0, backend="numpy")
    np.testing.assert_array_equal(auto.get_weights()[0], explicit.get_weights()[0])
