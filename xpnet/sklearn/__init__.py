"""scikit-learn estimators backed by xpnet: :class:`MLPClassifier` and :class:`MLPRegressor`.

They are drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
:class:`~sklearn.neural_network.MLPRegressor`: the same hyperparameters (solvers ``"adam"``,
``"sgd"`` and ``"lbfgs"``, the learning-rate schedules, momentum, early stopping,
``n_iter_no_change``), the same fitted attributes (``coefs_``, ``intercepts_``, ``n_layers_``,
``n_outputs_``, ``out_activation_``, ``loss_``, ``loss_curve_``, ``n_iter_``, ...),
``sample_weight``, SciPy sparse input, multi-label targets, and the same output units and
losses; scikit-learn's own ``test_mlp.py`` passes against them (``tests/test_sklearn_upstream.py``).
Underneath is an :class:`xpnet.Sequential` that trains through :meth:`Sequential.fit`
(stochastic solvers) or SciPy's L-BFGS-B over its flat parameter buffer, on NumPy or, with
``backend="cupy"``, on a GPU.

This is the only xpnet package that imports scikit-learn; install it with
``pip install "xpnet[sklearn]"``.

Differences from scikit-learn's MLP
-----------------------------------
* ``coefs_`` and ``intercepts_`` of a fitted estimator are host *copies*: assign a new list
  to change the weights (writing into a returned array changes nothing).
* With several regression outputs, ``squared_error``'s reported loss is the sum over the
  outputs of half the mean square (scikit-learn reports the mean over the outputs but
  follows the sum's gradient), so L-BFGS's loss and gradient agree.
* ``early_stopping``'s validation split is stratified by class for multi-class targets too
  (scikit-learn stratifies only a binary problem, since it asks for one output unit), so the
  held-out rows differ from scikit-learn's there.
* SciPy sparse ``X`` is densified once per ``fit``/``predict`` call (see docs/sklearn.md for
  the measurement); memory is that of the dense matrix.
* Extra choices: ``solver`` ``"adamw"`` and ``"rmsprop"`` (xpnet's optimizers), the
  ``backend`` and ``dtype`` parameters, and the activation ``"leaky_relu"``.
"""

from __future__ import annotations

from ._estimators import MLPClassifier, MLPRegressor

# The pickled-network converters, under the names they had in the xpnet/sklearn.py module.
from ._helpers import model_from_plain as _model_from_plain  # noqa: F401
from ._helpers import model_to_plain as _model_to_plain  # noqa: F401

__all__ = ["MLPClassifier", "MLPRegressor"]
