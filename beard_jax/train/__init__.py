"""Training ConvNets on distilled sets: recipes, a pure vmappable trainer, evaluation."""

from beard_jax.train.evaluation import evaluate_seeds, make_evaluate_fn
from beard_jax.train.recipes import (
  ADAM_RECIPE,
  RECIPES,
  SGD_RECIPE,
  TrainRecipe,
  decay_epoch,
  epoch_learning_rates,
  get_recipe,
  make_optimizer,
  num_epochs,
)
from beard_jax.train.trainer import make_train_fn, seed_keys, train_one, train_seeds

__all__ = [
  'ADAM_RECIPE',
  'RECIPES',
  'SGD_RECIPE',
  'TrainRecipe',
  'decay_epoch',
  'epoch_learning_rates',
  'evaluate_seeds',
  'get_recipe',
  'make_evaluate_fn',
  'make_optimizer',
  'make_train_fn',
  'num_epochs',
  'seed_keys',
  'train_one',
  'train_seeds',
]
