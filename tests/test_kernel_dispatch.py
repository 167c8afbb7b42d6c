"""Every update, hook and loss runs on the kernels of its arrays' namespace.

The portable kernels compute the same formulas, so a call that reached them instead of the
namespace's fast ones (numba, in-place NumPy, fused CuPy) would only show as lost speed: each
case here records which kernel object served the call. The kernels are ``get_kernels(np)``,
whatever ``XPNET_KERNELS`` chose.
"""

from __future__ import annotations

import numpy as np
import pytest
from update_helpers import BatchLoss, params_with_gradients

from xpnet.clipping import clip_grad_norm
from xpnet.kernels import get_kernels
from xpnet.losses import BinaryCrossEntropy, SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp, WeightDecay
from xpnet.sklearn._losses import SoftmaxLogLoss
from xpnet.sklearn._training import SampleL2, SklearnAdam, SklearnSGD


def _record(monkeypatch, method):
    """Calls of ``method`` on any kernel object: the objects that served them."""
    kernels = get_kernels(np)
    served: list = []
    for cls in {type(kernels), *type(kernels).__mro__}:
        real = cls.__dict__.get(method)
        if real is None:
            continue

        def spy(self, *args, _real=real, **kwargs):
            served.append(self)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    return kernels, served


def _namespace_kernels(k, kernels):
    # get_kernels caches one object per namespace module (NumPy's own, or its array-api-compat
    # wrapper, which namespace_of may return): of the chosen class, bound to a namespace.
    # get_kernels(None) would give the portable kernels bound to none.
    return type(k) is type(kernels) and k.xp is not None


def _no_fusion(opt):
    opt._fuses = lambda: False
    return opt


def _sgd_decay(weights_only):
    return SGD(lr=0.1, hooks=[WeightDecay(0.1, weights_only=weights_only)])


def _sample_l2(make, fuse=True):
    opt = make(hooks=[SampleL2(0.1, BatchLoss())])
    return opt if fuse else _no_fusion(opt)


UPDATES = {
    "sgd momentum": (lambda: SGD(lr=0.1, momentum=0.9), "sgd_momentum_update"),
    "adam": (lambda: Adam(lr=0.01), "adam_update"),
    "adamw": (lambda: AdamW(lr=0.01), "adam_update"),
    "rmsprop": (lambda: RMSProp(lr=0.01), "rmsprop_update"),
    "sklearn sgd": (lambda: SklearnSGD(lr=0.1), "velocity_sgd_update"),
    "sklearn adam": (lambda: SklearnAdam(lr=0.01), "adam_update"),
    "decay, flat": (lambda: _sgd_decay(False), "scaled_add"),
    "decay, weights": (lambda: _sgd_decay(True), "scaled_add"),
    "sample l2 hook": (lambda: _sample_l2(SklearnSGD, fuse=False), "scaled_add"),
    "sample l2 in sgd": (lambda: _sample_l2(SklearnSGD), "l2_velocity_sgd_update"),
    "sample l2 in adam": (lambda: _sample_l2(SklearnAdam), "l2_adam_update"),
}


@pytest.mark.parametrize("case", list(UPDATES))
@pytest.mark.parametrize("flat", [True, False])
def test_updates_and_hooks_use_the_namespace_kernels(case, flat, monkeypatch):
    make, method = UPDATES[case]
    if method.startswith("l2_") and not (flat and get_kernels(np).fused_l2):
        pytest.skip("the L2 term goes inside the update only over a compiled flat buffer")
    kernels, served = _record(monkeypatch, method)
    params = params_with_gradients()
    if not flat:  # parameter by parameter: a gradient rebound outside the buffer
        params[0].grad = params[0].grad.copy()
    opt = make()
    for _ in range(2):  # SGD's first step starts its momentum buffer without a kernel
        opt.step(params)
    assert served and all(_namespace_kernels(k, kernels) for k in served)


@pytest.mark.parametrize(
    ("loss", "target", "method"),
    [
        (SoftmaxCrossEntropy(), np.array([0, 2, 1]), "log_softmax_with_probs"),
        (SoftmaxLogLoss(), np.array([0, 2, 1]), "log_softmax_with_probs"),
        (BinaryCrossEntropy(), np.array([[0.0, 1, 1], [1, 0, 0], [0, 0, 1]]), "sigmoid"),
    ],
)
def test_losses_use_the_namespace_kernels(loss, target, method, monkeypatch):
    kernels, served = _record(monkeypatch, method)
    output = np.random.default_rng(1).standard_normal((3, 3))
    if isinstance(loss, SoftmaxLogLoss):
        target = np.eye(3)[target]
    loss.forward(output, target)
    assert served and all(_namespace_kernels(k, kernels) for k in served)


def test_clipping_uses_the_namespace_kernels(monkeypatch):
    kernels, served = _record(monkeypatch, "clip_grad_norm")
    params = params_with_gradients()
    clip_grad_norm(params, params[0].buffer, 0.1)
    assert served and all(_namespace_kernels(k, kernels) for k in served)
