"""Resumable iterative distillation: chunks of jitted iterations, atomic checkpoints, progress.

A method's state is a pytree (NamedTuple) with an int32 `iteration` field and a
typed `key`; iteration i draws all its randomness from `fold_in(key, i)`, so a
run cut into any chunks, or killed and resumed from a checkpoint, gives the same
bits as one uninterrupted run. `run_iterations` calls the method's jitted
`run_chunk(state, stop) -> (state, loss_sum, loss_count)` (which runs iterations
`state.iteration .. stop - 1` in one `lax.while_loop`), sizes chunks to take
about `CHUNK_SECONDS`, stops chunks at multiples of `checkpoint_every` to save
the state there (`.npz` of the pytree leaves plus a JSON header, written with
`atomic_write_bytes`), and reports progress.

A checkpoint names the run it belongs to (a fingerprint of the method, data,
hyperparameters and key); resuming from one of another run raises.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from beard_jax.io.atomic import atomic_write_bytes

CHUNK_SECONDS = 10.0
_HEADER = '__header__'


class Progress(NamedTuple):
  """One progress report of an iterative distillation.

  Attributes:
    label: what runs, e.g. `DM cifar10 IPC 10`.
    iteration: iterations done.
    total: iterations of the whole run.
    loss: mean loss per class over the last chunk (the reference's printed loss).
    iterations_per_second: measured in this process, compilation excluded when possible.
    eta_seconds: time left at that rate.
  """

  label: str
  iteration: int
  total: int
  loss: float
  iterations_per_second: float
  eta_seconds: float


ProgressFn = Callable[[Progress], None]
RunChunk = Callable[[Any, Any], tuple[Any, jax.Array, jax.Array]]


class LogProgress:
  """Logs a `Progress` through absl at most every `every_s` seconds, and the last one."""

  def __init__(self, every_s: float = 30.0):
    self.every_s = every_s
    self._last = -math.inf

  def __call__(self, report: Progress) -> None:
    now = time.monotonic()
    if report.iteration < report.total and now - self._last < self.every_s:
      return
    self._last = now
    logging.info(
      '%s: iteration %d/%d, loss %.4f, %s, ETA %s',
      report.label,
      report.iteration,
      report.total,
      report.loss,
      _format_rate(report.iterations_per_second),
      _format_seconds(report.eta_seconds),
    )


def _format_rate(iterations_per_second: float) -> str:
  """'12.30 it/s', or '45.2 s/it' below one iteration per second (MTT experts: minutes)."""
  if iterations_per_second >= 1 or iterations_per_second <= 0:
    return f'{iterations_per_second:.2f} it/s'
  return f'{1 / iterations_per_second:.1f} s/it'


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{secs:02d}s' if hours else f'{minutes}m{secs:02d}s'


def _to_host(leaf: Any) -> np.ndarray:
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    leaf = jax.random.key_data(leaf)
  return np.asarray(leaf)


def iterate_until(step: Callable[[Any], tuple[Any, jax.Array]], state: Any, stop) -> tuple:
  """`step` from `state.iteration` up to `stop` in one `lax.while_loop` (inside a method's
  jitted `run_chunk`).

  Returns:
    (the state at `stop`, the sum of the losses `step` returned, iterations run int32).
  """
  start = state.iteration

  def body(carry):
    state, loss_sum = carry
    state, loss = step(state)
    return state, loss_sum + loss

  state, loss_sum = jax.lax.while_loop(
    lambda carry: carry[0].iteration < stop, body, (state, jax.numpy.zeros((), jax.numpy.float32))
  )
  return state, loss_sum, state.iteration - start


def save_checkpoint(
  path: str | os.PathLike, state: Any, fingerprint: str, elapsed_seconds: float
) -> None:
  """Atomically writes `state` (any pytree; typed keys as their key data) to `path`."""
  leaves = [_to_host(leaf) for leaf in jax.tree.leaves(state)]
  header = {'fingerprint': fingerprint, 'elapsed_seconds': elapsed_seconds, 'leaves': len(leaves)}
  buffer = io.BytesIO()
  arrays = {f'{i:05d}': leaf for i, leaf in enumerate(leaves)}
  np.savez(buffer, **arrays, **{_HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)})
  atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
  path: str | os.PathLike, template: Any, fingerprint: str
) -> tuple[Any, float] | None:
  """The state saved at `path`, shaped like `template`, and its elapsed seconds; None if no file.

  Raises:
    ValueError: the file belongs to another run (fingerprint), or its arrays do not
      fit `template` (count, shape or dtype).
  """
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as archive:
    header = json.loads(archive[_HEADER].tobytes().decode())
    if header['fingerprint'] != fingerprint:
      raise ValueError(
        f'{path} is the checkpoint of another run (fingerprint {header["fingerprint"]}, this run '
        f'{fingerprint}); delete it to start over'
      )
    saved = [archive[f'{i:05d}'] for i in range(header['leaves'])]
  template_leaves, treedef = jax.tree.flatten(template)
  if len(saved) != len(template_leaves):
    raise ValueError(f'{path}: {len(saved)} arrays, the state has {len(template_leaves)}')
  restored = []
  for i, (array, like) in enumerate(zip(saved, template_leaves, strict=True)):
    expected = _to_host(like)
    if array.shape != expected.shape or array.dtype != expected.dtype:
      raise ValueError(
        f'{path}: array {i} is {array.dtype} {array.shape}, the state expects '
        f'{expected.dtype} {expected.shape}'
      )
    if isinstance(like, jax.Array) and jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
      restored.append(jax.random.wrap_key_data(array, impl=jax.random.key_impl(like)))
    else:
      restored.append(jax.numpy.asarray(array))
  return jax.tree.unflatten(treedef, restored), float(header['elapsed_seconds'])


class RunOptions(NamedTuple):
  """Where and how often a run saves itself, and whom it tells.

  Attributes:
    checkpoint_path: the checkpoint file.
    checkpoint_every: iterations between checkpoints (chunks end on its multiples).
    fingerprint: identifies the run (see `load_checkpoint`).
    label: names the run in progress reports.
    progress: called after every chunk.
  """

  checkpoint_path: str
  checkpoint_every: int
  fingerprint: str
  label: str
  progress: ProgressFn


def run_iterations(
  run_chunk: RunChunk, initial_state: Any, total: int, options: RunOptions
) -> tuple[Any, float]:
  """Runs a state to `total` iterations, resuming from and writing checkpoints.

  Args:
    run_chunk: jitted `(state, stop) -> (state, loss_sum, loss_count)`; `stop` is an
      int32 scalar, the iteration to stop before.
    initial_state: the state at iteration 0 (also the template of a checkpoint).
    total: iterations of the whole run.
    options: checkpointing and progress.

  Returns:
    The final state and the wall seconds of the whole run (earlier processes included).

  Raises:
    FloatingPointError: a chunk's loss is NaN or infinite (nothing is saved).
    ValueError: a checkpoint of another run, or one already past `total`.
  """
  if options.checkpoint_every < 1:
    raise ValueError(f'checkpoint_every must be ≥ 1, found {options.checkpoint_every}')
  resumed = load_checkpoint(options.checkpoint_path, initial_state, options.fingerprint)
  state, elapsed = resumed if resumed else (initial_state, 0.0)
  iteration = int(state.iteration)
  if iteration > total:
    raise ValueError(
      f'{options.checkpoint_path} is at iteration {iteration}, past the {total} asked for; ask '
      'for more iterations or delete it'
    )
  if resumed:
    logging.info('%s: resuming at iteration %d/%d', options.label, iteration, total)
  # The first chunk is one iteration: it holds the compilation, so it is not timed.
  chunk, timed_iterations, timed_seconds = 1, 0, 0.0
  while iteration < total:
    next_checkpoint = (iteration // options.checkpoint_every + 1) * options.checkpoint_every
    stop = min(total, next_checkpoint, iteration + chunk)
    start = time.perf_counter()
    state, loss_sum, loss_count = run_chunk(state, np.int32(stop))
    loss = float(loss_sum) / max(float(loss_count), 1.0)
    seconds = time.perf_counter() - start
    elapsed += seconds
    if not math.isfinite(loss):
      raise FloatingPointError(
        f'{options.label}: loss {loss} at iterations {iteration}..{stop - 1}; nothing written'
      )
    if timed_seconds or chunk > 1:
      timed_iterations, timed_seconds = timed_iterations + stop - iteration, timed_seconds + seconds
      rate = timed_iterations / timed_seconds
    else:
      rate = (stop - iteration) / seconds
    chunk = max(1, int(rate * CHUNK_SECONDS))
    iteration = stop
    if iteration % options.checkpoint_every == 0 or iteration == total:
      save_checkpoint(options.checkpoint_path, state, options.fingerprint, elapsed)
    eta = (total - iteration) / rate if rate > 0 else math.inf
    options.progress(Progress(options.label, iteration, total, loss, rate, eta))
  return state, elapsed
