"""Training ConvNets on distilled sets: recipes, a pure vmappable trainer, evaluation."""

from beard_jax.train.evaluation import evaluate_seeds, make_evaluate_fn
from beard_jax.train.loop import TrainingReport, train_seeds
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
from beard_jax.train.trainer import (
  TrainState,
  init_state,
  make_chunk_fn,
  make_init_fn,
  make_train_fn,
  prepare_inputs,
  seed_keys,
  train_epochs,
  train_one,
)

__all__ = [
  'ADAM_RECIPE',
  'RECIPES',
  'SGD_RECIPE',
  'TrainRecipe',
  'TrainState',
  'TrainingReport',
  'decay_epoch',
  'epoch_learning_rates',
  'evaluate_seeds',
  'get_recipe',
  'init_state',
  'make_chunk_fn',
  'make_evaluate_fn',
  'make_init_fn',
  'make_optimizer',
  'make_train_fn',
  'num_epochs',
  'prepare_inputs',
  'seed_keys',
  'train_epochs',
  'train_one',
  'train_seeds',
]
