"""beard-jax: BEARD's adversarial-robustness benchmark for distilled datasets, in JAX."""

__version__ = '0.1.0'
