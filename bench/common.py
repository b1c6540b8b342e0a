"""Shared setup of the benchmarks: data, the two models on the same weights, timing.

Not a test module: nothing here asserts anything. Every benchmark reads the real
data through `$BEARD_DATA_DIR` (default `../shared/data` next to the repo root).

The reference side is PyTorch (`torch.set_num_threads(2)`) with the ConvNet of
`tests/parity/torch_convnet.py`; our side is the Flax ConvNet with the same BEARD
checkpoint, imported by `beard_jax.models.torch_import.load_torch_convnet`.
`--torch_device=cuda` moves the reference to the GPU (JAX uses its default
backend); every timed reference call then ends in `torch.cuda.synchronize()`.
Importing this module makes the process keep freed host memory (both sides at their
best on a CPU; `beard_jax/host_memory.py`).
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import flags

from beard_jax.data.specs import get_dataset_spec
from beard_jax.host_memory import DISABLE_VARIABLE, keep_freed_memory
from beard_jax.models.convnet import ConvNet, make_apply_fn
from beard_jax.models.torch_import import load_torch_convnet

# The repo root on sys.path, so that `tests.parity.torch_convnet` imports.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))


# Both sides run in this process, so both reuse freed memory instead of page-faulting fresh
# buffers (PyTorch at its best, as ours): beard_jax/host_memory.py.
KEEPS_FREED_MEMORY = keep_freed_memory()
print(
  f'host memory: freed buffers {"kept" if KEEPS_FREED_MEMORY else "returned to the OS"} '
  f'({DISABLE_VARIABLE}=0 returns them)',
  file=sys.stderr,
)

CHECKPOINT = 'beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth'
TEST_SET = 'cifar10/test.npz'
TORCH_THREADS = 2

flags.DEFINE_enum(
  'torch_device', 'cpu', ['cpu', 'cuda'], 'device of the PyTorch reference (cuda: a GPU run)'
)


def data_dir() -> pathlib.Path:
  """`$BEARD_DATA_DIR`, else `../shared/data` relative to the repo root."""
  env = os.environ.get('BEARD_DATA_DIR')
  path = pathlib.Path(env) if env else REPO_ROOT.parent / 'shared' / 'data'
  if not path.is_dir():
    raise FileNotFoundError(f'no data directory at {path}; set BEARD_DATA_DIR')
  return path


def import_torch():
  """torch with `TORCH_THREADS` intra-op threads (the reference side's setting)."""
  import torch

  torch.set_num_threads(TORCH_THREADS)
  return torch


def torch_device() -> str:
  """The reference's device: `--torch_device`."""
  return flags.FLAGS.torch_device


def to_torch(array: np.ndarray):
  """A numpy array as a torch tensor on the reference's device."""
  return import_torch().from_numpy(array).to(torch_device())


def torch_sync() -> None:
  """Waits for the reference's queued GPU work (no-op on a CPU)."""
  if torch_device() == 'cuda':
    import_torch().cuda.synchronize()


def torch_convnet_module():
  """`tests/parity/torch_convnet.py`, the PyTorch twin of our ConvNet."""
  from tests.parity import torch_convnet

  return torch_convnet


class Models(NamedTuple):
  """The BEARD DC checkpoint on both sides (the `beard` protocol: normalised input).

  Attributes:
    model: our Flax `ConvNet(10)`.
    params: its Flax variables.
    apply_fn: `apply_fn(params, x)`: x [B, 32, 32, 3] normalised NHWC → logits [B, 10].
    torch_model: the bare PyTorch net in eval mode: x [B, 3, 32, 32] normalised NCHW.
  """

  model: Any
  params: Any
  apply_fn: Callable[..., jax.Array]
  torch_model: Any


def load_models(checkpoint: str = CHECKPOINT) -> Models:
  """The same BEARD checkpoint as a Flax model and as a bare PyTorch model."""
  path = data_dir() / checkpoint
  spec = get_dataset_spec('cifar10')
  model = ConvNet(spec.num_classes)
  params = load_torch_convnet(path, model, spec.image_size)
  apply_fn = make_apply_fn(model, spec, 'normalized')
  import_torch()
  torch_model = torch_convnet_module().torch_convnet(str(path), pixels=False).to(torch_device())
  for p in torch_model.parameters():
    p.requires_grad_(False)
  return Models(model, params, apply_fn, torch_model)


class Images(NamedTuple):
  """The first N CIFAR-10 test images, normalised, in both layouts.

  Attributes:
    nhwc: float32 [N, 32, 32, 3] mean/std-normalised (our side).
    labels: int32 [N].
    nchw: float32 [N, 3, 32, 32] the same values (the reference side, numpy).
  """

  nhwc: np.ndarray
  labels: np.ndarray
  nchw: np.ndarray


def load_test_images(num_images: int) -> Images:
  """The first `num_images` CIFAR-10 test images, mean/std-normalised."""
  spec = get_dataset_spec('cifar10')
  with np.load(data_dir() / TEST_SET) as archive:
    pixels = archive['images'][:num_images].astype(np.float32) / 255.0
    labels = archive['labels'][:num_images].astype(np.int32)
  mean = np.asarray(spec.mean, np.float32)
  std = np.asarray(spec.std, np.float32)
  nhwc = (pixels - mean) / std
  nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
  return Images(nhwc, labels, nchw)


def batches(num: int, batch_size: int) -> list[slice]:
  """Consecutive slices of at most `batch_size` covering range(num)."""
  return [slice(i, min(i + batch_size, num)) for i in range(0, num, batch_size)]


def compile_jit(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float]:
  """`jax.jit(fn)` compiled ahead of time for `args`, and the seconds that took."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def block(tree: Any) -> Any:
  """Waits for every array in `tree`."""
  return jax.block_until_ready(tree)


def time_alternating(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
  """Runs every function once per round, `repeats` rounds, order reversed every other round.

  Returns:
    name → list of `repeats` wall times in seconds.
  """
  times: dict[str, list[float]] = {name: [] for name in fns}
  names = list(fns)
  for round_index in range(repeats):
    order = names if round_index % 2 == 0 else names[::-1]
    for name in order:
      start = time.perf_counter()
      fns[name]()
      times[name].append(time.perf_counter() - start)
  return times


def median(values: list[float]) -> float:
  return float(statistics.median(values))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
  """A GitHub-markdown table; floats get 3 significant digits (≥ 100: no decimals)."""

  def cell(value: Any) -> str:
    if isinstance(value, float):
      if value != value:
        return 'n/a'
      return f'{value:.0f}' if abs(value) >= 100 else f'{value:.3g}'
    return str(value)

  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)


def machine_line() -> str:
  """CPU model, core count and library versions, for the results file."""
  model = 'unknown CPU'
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  torch = import_torch()
  gpu = ''
  if torch_device() == 'cuda':
    gpu = f', torch on {torch.cuda.get_device_name()}'
  return (
    f'{model}, nproc={os.cpu_count()}, jax {jax.__version__} ({jax.devices()[0].device_kind}), '
    f'torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}'
  )


def distill_runner(run_chunk, state, data, spec, config) -> tuple[Callable[[int], float], float]:
  """A distillation method's jitted `run_chunk`, compiled ahead: (run(iterations) -> wall
  seconds, compile seconds); each call continues from the previous call's state."""
  start = time.perf_counter()
  compiled = run_chunk.lower(state, np.int32(1), data, spec, config).compile()
  compile_seconds = time.perf_counter() - start
  holder = [state]

  def run(iterations: int) -> float:
    state = holder[0]
    stop = np.int32(int(state.iteration) + iterations)
    start = time.perf_counter()
    state, loss_sum, _ = compiled(state, stop, data)
    jax.block_until_ready((state, loss_sum))
    holder[0] = state
    return time.perf_counter() - start

  return run, compile_seconds
