"""BACON (Zhou et al., "BACON: Bayesian Optimal Condensation Framework for Dataset
Distillation"; the BEARD authors' own method), as its official code runs it.

The official `Code/BACON_cifar10.py` (zhouzhengqd/BACON) is IDM's script with one line
changed: the distribution-matching term. Everything else — the queue of nets trained on
real data, 4-in-1 images, Siamese DSA, the class-aware CE term weighted by the net's
training accuracy in percent, per-class SGD steps sharing one momentum buffer — is IDM's,
and runs here through `idm.step` with `bayesian_distance` as its `matching`. BACON's
commands (`Code/command.txt`) equal IDM's except that CIFAR-100 IPC 50 and Tiny-ImageNet
IPC 10 train the queue nets 50 steps per iteration; there is no Tiny-ImageNet IPC-50
command (IDM's is used). `Code/BACON_tiny.py` also fixes the inverted `--aug` branch of
`IDM_tiny.py`'s initialisation (`if not args.aug:` whole images, else four shrunk ones),
so BACON's Tiny-ImageNet sets start 4-in-1 (`init='real_4in1'`) where IDM's start whole.

The matching term of class c, with μ_r, μ_s the mean embeddings of the real and the
synthetic batch, s_r the real batch's per-feature standard deviation (unbiased) and
Δ = μ_s − μ_r (real side not differentiated):

  NLL_c = Σ_d −log N(μ_s,d; μ_r,d, σ_d²),  σ_d = exp(s_r,d)
        = Σ_d [½ log 2π + s_r,d + ½ (Δ_d / σ_d)²]
  TV_c  = ½ Σ_d |Δ_d|
  loss_c = NLL_c + 0.8 · TV_c  (+ 0.2 · clip_c, see below)

Deviations from the official code (beyond IDM's, listed in `idm`):
  * The official NLL is `−log(pdf)` evaluated in float32; it is −inf (a NaN step) once
    |Δ_d| / σ_d exceeds about 14. Here the log-density is written analytically: the same
    value wherever the official one is finite.
  * The `0.2 · clip` term is left out: it compares two scalars that both equal 1/D (the
    means of two softmax vectors over the D features), so it is zero up to rounding and
    its gradient vanishes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from beard_jax.distill import idm
from beard_jax.distill.class_chunks import class_means

OFFICIAL_ITERATIONS = idm.OFFICIAL_ITERATIONS
TV_WEIGHT = 0.8


def official_config(dataset: str, ipc: int) -> idm.IDMConfig:
  """BACON's command for `dataset` and `ipc`: IDM's, with the two differences of
  `Code/command.txt` and the 4-in-1 Tiny-ImageNet start (module docstring)."""
  config = idm.official_config(dataset, ipc)
  if (dataset, ipc) in (('cifar100', 50), ('tinyimagenet', 10)):
    config = config._replace(model_train_steps=50)
  if dataset == 'tinyimagenet':
    config = config._replace(init='real_4in1')
  return config


def bayesian_distance(real: jax.Array, valid: jax.Array, syn: jax.Array) -> jax.Array:
  """BACON's matching term NLL_c + 0.8·TV_c per class (module docstring).

  Args:
    real: [C·n, F] real embeddings, class-major; valid: bool [C, n] (padding False;
      each class needs ≥ 2 valid rows for its standard deviation).
    syn: [C·m, F] synthetic embeddings, class-major.

  Returns:
    float32 [C]; the real side is not differentiated.
  """
  num_classes = valid.shape[0]
  grouped = real.reshape(num_classes, -1, real.shape[-1])
  weights = valid.astype(real.dtype)[..., None]
  real_mean = class_means(real, num_classes, valid)
  variance = jnp.sum(weights * jnp.square(grouped - real_mean[:, None]), axis=1) / (
    jnp.sum(weights, axis=1) - 1.0
  )
  log_sigma = lax.stop_gradient(jnp.sqrt(variance))
  delta = class_means(syn, num_classes) - lax.stop_gradient(real_mean)
  nll = 0.5 * math.log(2 * math.pi) + log_sigma + 0.5 * jnp.square(delta * jnp.exp(-log_sigma))
  return jnp.sum(nll, axis=-1) + TV_WEIGHT * 0.5 * jnp.sum(jnp.abs(delta), axis=-1)
