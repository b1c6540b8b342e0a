"""Ranking, board assembly, rendering and figures from small hand-made metric rows."""

import csv
import io
import itertools
import json
import re

import pytest

from beard_jax.leaderboard import (
  build_boards,
  missing_published_boards,
  rank_rows,
  to_csv,
  to_html,
  to_markdown,
  write_leaderboards,
)
from beard_jax.metrics import compute_metrics


def row(
  method,
  rr,
  ae,
  *,
  dataset='cifar10',
  ipc='combined',
  targeted=False,
  training='standard',
  protocol='beard',
  clean=50.0,
  worst=10.0,
  adversary='all',
  degenerate=(),
):
  crei = None if rr is None else 0.5 * rr + 0.5 * ae
  attacks = [] if worst is None else ['pgd']
  return {
    'method': method, 'dataset': dataset, 'ipc': ipc, 'targeted': targeted, 'training': training,
    'protocol': protocol, 'adversary': adversary, 'rr': rr, 'ae': ae, 'crei': crei,
    'clean_acc': clean, 'worst_robust_acc': worst, 'worst_attack': attacks[0] if attacks else None,
    'attacks': attacks, 'attack_accs': [worst] if attacks else [], 'num_seeds': 1,
    'degenerate': list(degenerate),
  }  # fmt: skip


# CREI: B 55.0, A 40.0, C 40.0 (tie with A), D undefined, full 70.0 (baseline).
BOARD_ROWS = [
  row('C', 30.0, 50.0),
  row('A', 20.0, 60.0, degenerate=['single_attack: with one attack ...']),
  row('full', 80.0, 60.0, clean=84.5),
  row('B', 60.123, 49.877),
  row('D', None, None, worst=None),
]


def test_rank_order_ties_and_baseline():
  boards = build_boards(BOARD_ROWS)
  assert len(boards) == 1
  entries = boards[0].entries
  assert [(e.rank, e.method, e.baseline) for e in entries] == [
    (1, 'B', False),
    (2, 'A', False),
    (3, 'C', False),
    (None, 'D', False),
    (None, 'full', True),
  ]
  assert entries[0].crei == pytest.approx(55.0)


def test_ranking_does_not_depend_on_input_order():
  expected = [e.method for e in rank_rows(BOARD_ROWS[:2] + BOARD_ROWS[3:])]
  for perm in itertools.permutations(BOARD_ROWS[:2] + BOARD_ROWS[3:]):
    assert [e.method for e in rank_rows(perm)] == expected
  with pytest.raises(ValueError, match='one row per method'):
    rank_rows([row('A', 1.0, 1.0), row('A', 2.0, 2.0)])


def test_boards_split_and_order():
  rows = [
    row('DM', 10.0, 20.0, ipc=1),
    row('DM', 10.0, 30.0, ipc=10),
    row('DM', 10.0, 40.0),
    row('DM', 15.0, 40.0, dataset='cifar100'),
    row('DM', 5.0, 40.0, targeted=True),
    row('DM', 25.0, 40.0, training='adversarial'),
    row('DM', 0.0, 100.0, adversary='fgsm'),  # single-adversary rows never enter boards
    row('full', 50.0, 50.0),  # baseline: only a 'combined' row
    row('full', 50.0, 50.0, ipc=1, dataset='tinyimagenet'),  # a baseline alone makes no board
  ]
  boards = build_boards(rows)
  assert [b.slug for b in boards] == [
    'beard-standard-untargeted-cifar10-unified',
    'beard-standard-untargeted-cifar10-ipc1',
    'beard-standard-untargeted-cifar10-ipc10',
    'beard-standard-untargeted-cifar100-unified',
    'beard-standard-targeted-cifar10-unified',
    'beard-adversarial-untargeted-cifar10-unified',
  ]
  # The baseline's combined row stands in on the IPC boards of the same dataset and mode.
  assert [e.method for e in boards[1].entries] == ['DM', 'full']
  assert [e.method for e in boards[3].entries] == ['DM']
  assert [e.method for e in boards[4].entries] == ['DM']
  assert boards[0].title == 'CIFAR-10 · Unified · untargeted · standard training · beard protocol'
  assert boards[5].title.endswith('· w/ AT · beard protocol')
  missing = missing_published_boards(boards)
  assert len(missing) == 12 - 4
  assert 'CIFAR-10 · IPC 50 · untargeted · standard training · beard protocol' in missing


def test_markdown_content():
  text = to_markdown(build_boards(BOARD_ROWS), ['Tiny-ImageNet · IPC 1 · x'])
  lines = text.splitlines()
  start = lines.index('## CIFAR-10 · Unified · untargeted · standard training · beard protocol')
  assert lines[start + 2 : start + 9] == [
    '| Rank | Method | Seeds | CREI | RRM | AEM | Clean acc | PGD acc | Worst-case robust acc '
    '| Notes |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---|',
    '| 1 | B | 1 | 55.00 | 60.12 | 49.88 | 50.00 | 10.00 | 10.00 |  |',
    '| 2 | A | 1 | 40.00 | 20.00 | 60.00 | 50.00 | 10.00 | 10.00 | single_attack |',
    '| 3 | C | 1 | 40.00 | 30.00 | 50.00 | 50.00 | 10.00 | 10.00 |  |',
    '| – | D | 1 | – | – | – | 50.00 | – | – |  |',
    '| – | *full (baseline)* | 1 | 70.00 | 80.00 | 60.00 | 84.50 | 10.00 | 10.00 |  |',
  ]
  assert '- Tiny-ImageNet · IPC 1 · x' in lines


def test_csv_content():
  table = list(csv.DictReader(io.StringIO(to_csv(build_boards(BOARD_ROWS)))))
  assert [(r['rank'], r['method'], r['baseline']) for r in table] == [
    ('1', 'B', 'False'),
    ('2', 'A', 'False'),
    ('3', 'C', 'False'),
    ('', 'D', 'False'),
    ('', 'full', 'True'),
  ]
  b = table[0]
  assert (b['crei'], b['rrm'], b['aem']) == ('55.0', '60.12', '49.88')
  assert b['board'] == 'beard-standard-untargeted-cifar10-unified' and b['ipc'] == 'combined'
  assert table[1]['degenerate'].startswith('single_attack')


def test_html_is_self_contained():
  page = to_html(build_boards(BOARD_ROWS), ['missing board'], [('a figure', b'\x89PNG fake')])
  assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
  assert '<style>' in page and '<link' not in page
  # The one script (column sorting) is inline: nothing is fetched.
  assert page.count('<script') == 1 and '<script>' in page
  assert 'http://' not in page and 'https://' not in page and '@import' not in page
  sources = re.findall(r'src="([^"]*)"', page)
  assert sources and all(s.startswith('data:image/png;base64,') for s in sources)
  assert '<td class="method">full (baseline)</td>' in page and 'class="baseline"' in page
  assert '<td>55.00</td>' in page and 'missing board' in page
  assert page.count('<table') == 1


def _records():
  """Two methods, two IPCs, both modes, plus adversarial training for DM and a baseline."""
  out = []
  for method, shift in (('DM', 0.0), ('MTT', 3.0), ('full', 20.0)):
    for training in ('standard', 'adversarial'):
      if training == 'adversarial' and method != 'DM':
        continue
      for ipc in (1, 10) if method != 'full' else (0,):
        base = {'method': method, 'dataset': 'cifar10', 'ipc': ipc, 'seed': 0,
                'protocol': 'beard', 'training': training}  # fmt: skip
        clean = 30.0 + shift + ipc
        for targeted in (False, True):
          out.append({**base, 'attack': 'clean', 'targeted': targeted, 'clean_acc': clean,
                      'robust_acc': clean, 'attack_seconds': 1.0 + targeted})  # fmt: skip
          for k, attack in enumerate(('fgsm', 'pgd', 'cw')):
            acc = clean - 5.0 * (k + 1) - shift / 2 + (training == 'adversarial') * 4
            out.append({**base, 'attack': attack, 'targeted': targeted, 'robust_acc': acc,
                        'attack_seconds': 2.0 + 3 * k + ipc / 10})  # fmt: skip
  return out


def test_write_leaderboards_files(tmp_path):
  rows = compute_metrics(_records())
  paths = write_leaderboards(rows, tmp_path / 'out')
  names = sorted(p.split('/')[-1] for p in paths)
  assert names == sorted([
    'leaderboards.md', 'leaderboards.csv', 'leaderboards.html', 'metric_rows.json',
    'robust_accuracy_beard_untargeted_standard.png', 'robust_accuracy_beard_targeted_standard.png',
    'robust_accuracy_beard_untargeted_adversarial.png',
    'robust_accuracy_beard_targeted_adversarial.png',
    'metrics_beard_untargeted_standard.png', 'metrics_beard_targeted_standard.png',
    'metrics_beard_untargeted_adversarial.png', 'metrics_beard_targeted_adversarial.png',
    'crei_vs_ipc_beard_untargeted_standard.png', 'crei_vs_ipc_beard_targeted_standard.png',
    'crei_vs_ipc_beard_untargeted_adversarial.png', 'crei_vs_ipc_beard_targeted_adversarial.png',
    'adversarial_training_beard_untargeted.png', 'adversarial_training_beard_targeted.png',
  ])  # fmt: skip
  for path in paths:
    data = open(path, 'rb').read()
    assert len(data) > 0
    if path.endswith('.png'):
      assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 5000
  assert len(json.load(open(tmp_path / 'out' / 'metric_rows.json'))) == len(rows)
  page = open(tmp_path / 'out' / 'leaderboards.html').read()
  assert page.count('<img') == 14 and 'http://' not in page and 'https://' not in page
  md = open(tmp_path / 'out' / 'leaderboards.md').read()
  assert '## CIFAR-10 · IPC 10 · untargeted · standard training · beard protocol' in md
  assert '*full (baseline)*' in md
