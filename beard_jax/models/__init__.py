"""Models: the BEARD ConvNet, its functional form and checkpoint I/O."""

from beard_jax.models.convnet import ConvNet, init_params, make_apply_fn

__all__ = ['ConvNet', 'init_params', 'make_apply_fn']
