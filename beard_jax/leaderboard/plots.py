"""Figures like the paper's, drawn with matplotlib's Agg backend into PNG files.

- `plot_robust_accuracy`: clean and robust accuracy under each attack, bars per method.
- `plot_metric_bars`: RR, AE and CREI per method (grouped bars), one panel per dataset.
- `plot_crei_vs_ipc`: CREI against IPC, one line per method, one panel per dataset.
- `plot_training_comparison`: Unified CREI with vs without adversarial training.

Each takes metric rows (`compute_metrics` output) and a selection, draws only
multi-adversary rows, and returns the path written, or None when nothing matches.
Titles and axes say in words what is drawn; bars carry their values; where a row has
several seeds, error bars show the population std across seeds (`seed_std`). Rows left
out of the ranking (`boards.UNRANKED_CODES`) are not drawn in the RR/AE/CREI figures,
whose values would mean nothing, and a line under the figure names them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from beard_jax.leaderboard.boards import (  # noqa: E402
  DATASET_TITLES,
  DATASETS,
  attack_title,
  is_baseline,
  make_entry,
  order_attacks,
  unranked_reasons,
)

_METRICS = (('rr', 'RR (robustness ratio)'), ('ae', 'AE (attack efficiency)'), ('crei', 'CREI'))


def _select(rows: Iterable[Mapping], **fields) -> tuple[list[Mapping], list[str]]:
  """The multi-adversary rows with a CREI that match `fields`, and the methods of those
  left out because their CREI measures nothing (`boards.UNRANKED_CODES`)."""
  matching = [
    r
    for r in rows
    if r['adversary'] == 'all'
    and r['crei'] is not None
    and all(r[k] == v for k, v in fields.items())
  ]
  kept = [r for r in matching if not unranked_reasons(r['degenerate'])]
  left_out = sorted({r['method'] for r in matching if unranked_reasons(r['degenerate'])})
  return kept, left_out


def _datasets(rows: list[Mapping]) -> list[str]:
  present = {r['dataset'] for r in rows}
  return [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))


def _panels(count: int, title: str, subtitle: str, width: float = 4.6):
  """A row of `count` panels under a two-line title: what is drawn, then the selection."""
  size = (max(width * count + 0.6, 7.0), 4.6)
  fig, axes = plt.subplots(1, count, figsize=size, squeeze=False)
  fig.suptitle(f'{title}\n{subtitle}', fontsize='medium')
  return fig, axes[0]


def _left_out_note(fig, methods: Sequence[str]) -> None:
  if methods:
    fig.text(
      0.01, 0.01, f'Not drawn (not ranked, see the boards\' notes): {", ".join(methods)}',
      fontsize='x-small', color='#a05a00',
    )  # fmt: skip


def _save(fig, path: str | os.PathLike) -> str:
  fig.tight_layout(rect=(0, 0.03, 1, 1))
  fig.savefig(path, dpi=110, format='png')
  plt.close(fig)
  return str(path)


def _mode(targeted: bool) -> str:
  return 'targeted' if targeted else 'untargeted'


def _ipc_words(ipc: object) -> str:
  return 'Unified over IPCs' if ipc == 'combined' else f'IPC {ipc}'


def _subtitle(*parts: str, training: str | None = None, protocol: str) -> str:
  if training is not None:
    words = 'adversarial training' if training == 'adversarial' else f'{training} training'
    parts = (*parts, words)
  return ' · '.join((*parts, f'{protocol} protocol'))


def _std(row: Mapping, key: str) -> float:
  """The std over seeds of `key` in `row`; 0 where there is none (one seed)."""
  return (row.get('seed_std') or {}).get(key, 0.0)


def _bars(ax, xs: Sequence[float], values: Sequence[float], errors: Sequence[float], width: float,
          **style):  # fmt: skip
  """Bars with their values written above them (upright on narrow bars), and seed error
  bars where any error is non-zero."""
  has_errors = any(e > 0 for e in errors)
  bars = ax.bar(
    xs, values, width, yerr=errors if has_errors else None, capsize=2.5,
    error_kw={'elinewidth': 0.8}, **style,
  )  # fmt: skip
  for x, value, error in zip(xs, values, errors, strict=True):
    if value != value:  # NaN: an attack this method was not run under
      continue
    ax.annotate(
      f'{value:.1f}', (x, max(value, 0.0) + error), xytext=(0, 2), textcoords='offset points',
      ha='center', va='bottom', fontsize=6.5, rotation=90 if width < 0.25 else 0,
    )  # fmt: skip
  return bars


def _headroom(ax, top: float) -> None:
  ax.set_ylim(min(0.0, ax.get_ylim()[0]), max(top * 1.18, 1.0))


def plot_robust_accuracy(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  training: str = 'standard',
  targeted: bool = False,
  ipc: object = 'combined',
) -> str | None:
  """Clean accuracy and robust accuracy under each attack (groups), one bar per method."""
  rows = [
    r
    for r in rows
    if r['adversary'] == 'all'
    and r['attacks']
    and (r['protocol'], r['training'], r['targeted'], r['ipc'])
    == (protocol, training, targeted, ipc)
  ]
  if not rows:
    return None
  datasets = _datasets(rows)
  title = f'Robust accuracy (%) under each attack, {_mode(targeted)}'
  subtitle = _subtitle(_ipc_words(ipc), training=training, protocol=protocol)
  fig, axes = _panels(len(datasets), title, subtitle, width=6.5)
  for ax, dataset in zip(axes, datasets, strict=True):
    chosen = sorted((r for r in rows if r['dataset'] == dataset), key=_method_order)
    attacks = order_attacks(a for r in chosen for a in r['attacks'])
    groups = ['clean_acc', *(f'robust_acc/{a}' for a in attacks)]
    width = 0.8 / len(chosen)
    top = 0.0
    for k, row in enumerate(chosen):
      entry = make_entry(row)
      values = [entry.clean_acc, *(entry.robust_accs.get(a, float('nan')) for a in attacks)]
      errors = [_std(row, g) for g in groups]
      xs = [i + (k - (len(chosen) - 1) / 2) * width for i in range(len(groups))]
      bars = _bars(ax, xs, values, errors, width, label=row['method'], color=f'C{k % 10}')
      if is_baseline(row['method']):
        for bar in bars:
          bar.set_hatch('//')
      top = max([top, *(v + e for v, e in zip(values, errors, strict=True) if v == v)])
    ax.set_xticks(range(len(groups)), ['Clean', *map(attack_title, attacks)], rotation=20)
    ax.set_xlabel('Attack (Clean: no attack)')
    ax.set_ylabel('Accuracy on the test images (%)')
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(axis='y', alpha=0.3)
    _headroom(ax, top)
    ax.legend(fontsize='small', title='Method', title_fontsize='small')
  return _save(fig, path)


def plot_metric_bars(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  training: str = 'standard',
  targeted: bool = False,
  ipc: object = 'combined',
) -> str | None:
  """Grouped bars of RR, AE and CREI per method (baseline hatched), per dataset."""
  rows, left_out = _select(rows, protocol=protocol, training=training, targeted=targeted, ipc=ipc)
  if not rows:
    return None
  datasets = _datasets(rows)
  title = f'RR, AE and CREI (%) per method, {_mode(targeted)}'
  subtitle = _subtitle(_ipc_words(ipc), training=training, protocol=protocol)
  fig, axes = _panels(len(datasets), title, subtitle)
  _left_out_note(fig, left_out)
  width = 0.8 / len(_METRICS)
  for ax, dataset in zip(axes, datasets, strict=True):
    chosen = sorted((r for r in rows if r['dataset'] == dataset), key=_method_order)
    top = 0.0
    for k, (key, name) in enumerate(_METRICS):
      xs = [i + (k - 1) * width for i in range(len(chosen))]
      values = [r[key] for r in chosen]
      errors = [_std(r, key) for r in chosen]
      bars = _bars(ax, xs, values, errors, width, label=name, color=f'C{k}')
      for bar, row in zip(bars, chosen, strict=True):
        if is_baseline(row['method']):
          bar.set_hatch('//')
      top = max([top, *(v + e for v, e in zip(values, errors, strict=True))])
    ax.set_xticks(range(len(chosen)), [r['method'] for r in chosen], rotation=30)
    ax.set_xlabel('Distillation method (hatched: full-size baseline)')
    ax.set_ylabel('Score (%)')
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(axis='y', alpha=0.3)
    _headroom(ax, top)
  axes[0].legend(fontsize='small')
  return _save(fig, path)


def _method_order(row: Mapping) -> tuple:
  return (is_baseline(row['method']), row['method'])


def plot_crei_vs_ipc(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  training: str = 'standard',
  targeted: bool = False,
) -> str | None:
  """CREI against IPC (categorical axis), one line per method, one panel per dataset."""
  rows, left_out = _select(rows, protocol=protocol, training=training, targeted=targeted)
  rows = [r for r in rows if isinstance(r['ipc'], int) and not is_baseline(r['method'])]
  if not rows:
    return None
  datasets = _datasets(rows)
  title = f'CREI (%) against images per class, {_mode(targeted)}'
  fig, axes = _panels(len(datasets), title, _subtitle(training=training, protocol=protocol))
  _left_out_note(fig, left_out)
  for ax, dataset in zip(axes, datasets, strict=True):
    chosen = [r for r in rows if r['dataset'] == dataset]
    ipcs = sorted({r['ipc'] for r in chosen})
    for method in sorted({r['method'] for r in chosen}):
      points = sorted(
        (r['ipc'], r['crei'], _std(r, 'crei')) for r in chosen if r['method'] == method
      )
      xs, values = [ipcs.index(i) for i, _, _ in points], [c for _, c, _ in points]
      errors = [e for _, _, e in points]
      ax.errorbar(
        xs, values, yerr=errors if any(errors) else None, marker='o', capsize=3, label=method
      )
    ax.set_xticks(range(len(ipcs)), [str(i) for i in ipcs])
    ax.set_xlabel('Images per class of the distilled set (IPC)')
    ax.set_ylabel('CREI (%)')
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(alpha=0.3)
  axes[-1].legend(fontsize='small', title='Method', title_fontsize='small')
  return _save(fig, path)


def plot_training_comparison(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  targeted: bool = False,
  ipc: object = 'combined',
) -> str | None:
  """CREI with ('adversarial') vs without ('standard') adversarial training, per method.

  Only methods that have both trainings are drawn; None when there are none.
  """
  rows, left_out = _select(rows, protocol=protocol, targeted=targeted, ipc=ipc)
  by_key = {(r['dataset'], r['method'], r['training']): r for r in rows}
  pairs = sorted(
    {(d, m) for d, m, t in by_key if t == 'standard' and (d, m, 'adversarial') in by_key},
    key=lambda dm: (dm[0], is_baseline(dm[1]), dm[1]),
  )
  if not pairs:
    return None
  datasets = [d for d in _datasets([{'dataset': d} for d, _ in pairs])]
  title = f'CREI (%) without and with adversarial training (AT), {_mode(targeted)}'
  fig, axes = _panels(len(datasets), title, _subtitle(_ipc_words(ipc), protocol=protocol))
  _left_out_note(fig, left_out)
  for ax, dataset in zip(axes, datasets, strict=True):
    methods = [m for d, m in pairs if d == dataset]
    top = 0.0
    for k, (training, name) in enumerate((('standard', 'w/o AT'), ('adversarial', 'w/ AT'))):
      chosen = [by_key[(dataset, m, training)] for m in methods]
      xs = [i + (k - 0.5) * 0.4 for i in range(len(methods))]
      values, errors = [r['crei'] for r in chosen], [_std(r, 'crei') for r in chosen]
      _bars(ax, xs, values, errors, 0.4, label=name, color=f'C{k}')
      top = max([top, *(v + e for v, e in zip(values, errors, strict=True))])
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_xlabel('Distillation method')
    ax.set_ylabel('CREI (%)')
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(axis='y', alpha=0.3)
    _headroom(ax, top)
  axes[0].legend(fontsize='small')
  return _save(fig, path)
