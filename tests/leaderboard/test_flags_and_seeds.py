"""Boards from records: degenerate models left out of the ranking, mean ± std over seeds,
the HTML page's accuracy table, and figures that say what they draw."""

import csv
import io
import re

import pytest
from matplotlib.container import BarContainer

from beard_jax.leaderboard import (
  build_accuracy_tables,
  build_boards,
  plots,
  to_csv,
  to_html,
  to_markdown,
  write_leaderboards,
)
from beard_jax.metrics import compute_metrics


def model(method, clean, attacks, *, seed=0, ipc=10, targeted=(False,), t0=1.0):
  """Records of one model and seed: a clean pass, then {attack: (acc, seconds)} per mode."""
  base = dict(method=method, dataset='cifar10', ipc=ipc, seed=seed, protocol='beard',
              training='standard', num_examples=512)  # fmt: skip
  out = []
  for mode in targeted:
    out.append({**base, 'attack': 'clean', 'targeted': mode, 'clean_acc': clean,
                'robust_acc': clean, 'attack_seconds': t0})  # fmt: skip
    for attack, (acc, seconds) in attacks.items():
      out.append({**base, 'attack': attack, 'targeted': mode, 'robust_acc': acc,
                  'attack_seconds': seconds})  # fmt: skip
  return out


# DM: RR 100*(15-10)/(40-10) = 16.67, AE 100*(4-1)/(5-1) = 75, CREI 45.83.
# MTT: RR 100*(25-20)/(50-20) = 16.67, AE 100*(4.5-1)/(6-1) = 70, CREI 43.33.
# ZERO, 0 % clean: RR 0 (C == min(a)), AE 100*(5-1)/(5-1) = 100, CREI 50: the highest.
WITH_ZERO = (
  model('DM', 40.0, {'fgsm': (20.0, 3.0), 'pgd': (10.0, 5.0)})
  + model('MTT', 50.0, {'fgsm': (30.0, 3.0), 'pgd': (20.0, 6.0)})
  + model('ZERO', 0.0, {'fgsm': (0.0, 5.0), 'pgd': (0.0, 5.0)})
)


def test_zero_clean_model_is_flagged_and_not_ranked(monkeypatch, tmp_path):
  rows = compute_metrics(WITH_ZERO)
  zero = next(r for r in rows if r['method'] == 'ZERO' and r['ipc'] == 10)
  assert zero['crei'] == pytest.approx(50.0)
  (board,) = [b for b in build_boards(rows) if b.ipc == 10]
  assert [(e.rank, e.method) for e in board.entries] == [(1, 'DM'), (2, 'MTT'), (None, 'ZERO')]
  codes = [n.split(':')[0] for n in board.entries[2].unranked_reasons]
  assert codes == ['clean_at_chance', 'clean_equals_min_acc']

  md = to_markdown([board]).splitlines()
  (line,) = [x for x in md if '| ZERO |' in x]
  assert line.startswith('| – | ZERO | 1 | 50.00 |')
  assert line.endswith(
    '| **not ranked: clean_at_chance, clean_equals_min_acc; also toolkit_t0_one_mode** |'
  )
  assert '`clean_at_chance`: clean accuracy at or below chance' in md[2]

  page = to_html([board])
  (tr,) = re.findall(r'<tr class="flagged">.*?</tr>', page, re.S)
  assert 'ZERO' in tr and 'not ranked: clean_at_chance' in tr
  assert 'C = 0.00 % is at or below chance (10.00 % for 10 classes)' in tr  # the hover text

  table = list(csv.DictReader(io.StringIO(to_csv([board]))))
  assert [r['rank'] for r in table] == ['1', '2', '']
  assert table[2]['not_ranked'].startswith('clean_at_chance: C = 0.00 %')
  assert table[0]['not_ranked'] == ''

  # The RR/AE/CREI figures leave it out and say so; the accuracy figure keeps it.
  drawn = _figures(
    monkeypatch, tmp_path, lambda path: plots.plot_metric_bars(rows, path, protocol='beard', ipc=10)
  )
  (ax,) = drawn.axes
  assert [t.get_text() for t in ax.get_xticklabels()] == ['DM', 'MTT']
  assert any('Not drawn' in t.get_text() and 'ZERO' in t.get_text() for t in drawn.texts)


# Two seeds of DM (untargeted, T0 1 s):
#   seed 0: C 50, fgsm 10 @ 2 s, pgd 0 @ 6 s -> RR 100*5/50 = 10,   AE 100*3/5 = 60,     CREI 35
#   seed 1: C 50, fgsm 20 @ 4 s, pgd 10 @ 8 s -> RR 100*5/40 = 12.5, AE 100*5/7 = 71.43, CREI 41.96
# Headline (seeds averaged first): fgsm 15 @ 3 s, pgd 5 @ 7 s -> RR 100/9, AE 200/3, CREI 38.89.
# Population std: RR 1.25, AE 5.71, CREI 3.48, fgsm 5, pgd 5, worst (0, 10) 5, C 0.
TWO_SEEDS = model('DM', 50.0, {'fgsm': (10.0, 2.0), 'pgd': (0.0, 6.0)}, seed=0) + model(
  'DM', 50.0, {'fgsm': (20.0, 4.0), 'pgd': (10.0, 8.0)}, seed=1
)


def test_boards_show_mean_and_std_over_seeds():
  boards = [b for b in build_boards(compute_metrics(TWO_SEEDS)) if b.ipc == 10]
  md = to_markdown(boards).splitlines()
  header = next(x for x in md if x.startswith('| Rank'))
  assert header == (
    '| Rank | Method | Seeds | CREI | RRM | AEM | Clean acc | FGSM acc | PGD acc '
    '| Worst-case robust acc | Notes |'
  )
  assert md[md.index(header) + 2] == (
    '| 1 | DM | 2 | 38.89 ± 3.48 | 11.11 ± 1.25 | 66.67 ± 5.71 | 50.00 ± 0.00 | 15.00 ± 5.00 '
    '| 5.00 ± 5.00 | 5.00 ± 5.00 | toolkit_t0_one_mode |'
  )
  (row,) = csv.DictReader(io.StringIO(to_csv(boards)))
  assert (row['crei'], row['crei_std'], row['rrm_std'], row['aem_std']) == (
    '38.89',
    '3.48',
    '1.25',
    '5.71',
  )
  assert (row['robust_acc/fgsm'], row['robust_acc/fgsm_std']) == ('15.0', '5.0')
  assert (row['clean_acc_std'], row['worst_robust_acc_std']) == ('0.0', '5.0')
  assert '<td>38.89<br><span class="std">± 3.48</span></td>' in to_html(boards)
  # One seed: no std anywhere.
  one = [b for b in build_boards(compute_metrics(TWO_SEEDS[:3])) if b.ipc == 10]
  (line,) = [x for x in to_markdown(one).splitlines() if x.startswith('| 1 | DM |')]
  assert '±' not in line
  assert next(csv.DictReader(io.StringIO(to_csv(one))))['crei_std'] == ''


def _both_modes():
  records = []
  for seed, shift in ((0, 0.0), (1, 1.0)):
    attacks = {'fgsm': (20.0 + shift, 3.0), 'pgd': (10.0 + shift, 5.0), 'aa': (5.0, 9.0)}
    records += model('DM', 40.0 + shift, attacks, seed=seed, targeted=(False, True))
  return records + model('ZERO', 0.0, {'fgsm': (0.0, 5.0), 'pgd': (0.0, 5.0)}, ipc=1)


def test_html_leads_with_sortable_robust_accuracy_per_attack_and_mode(tmp_path):
  rows = compute_metrics(_both_modes())
  (table,) = build_accuracy_tables(rows)
  assert [(line.method, line.ipc) for line in table.lines] == [('DM', 10), ('ZERO', 1)]
  write_leaderboards(rows, tmp_path)
  page = (tmp_path / 'leaderboards.html').read_text()
  sections = re.findall(r'<section id="([^"]+)">', page)
  assert sections[0] == 'accuracy-beard-standard-cifar10' and len(sections) > 1
  first = page[page.index('<section id="accuracy-') :]
  first = first[: first.index('</section>')]
  headers = re.findall(r'<th[^>]*>([^<]*)</th>', first)
  # AA is left out of targeted rows (beard protocol); the targeted columns follow suit.
  assert headers[:4] == ['Method', 'IPC', 'Seeds', 'Clean acc']
  assert {'FGSM untargeted', 'PGD untargeted', 'AutoAttack untargeted'} <= set(headers)
  assert {'FGSM targeted', 'PGD targeted', 'CREI untargeted', 'CREI targeted'} <= set(headers)
  assert {'RRM untargeted', 'AEM targeted', 'Notes'} <= set(headers)
  assert '<table class="sortable">' in first and 'class="flagged"' in first
  assert "addEventListener('click'" in page and 'src="http' not in page
  assert 'FGSM untargeted' in (tmp_path / 'leaderboards.md').read_text()


def _figures(monkeypatch, tmp_path, draw):
  """Runs `draw(path)` and returns the figure it saved, before it is closed."""
  saved = []
  original = plots._save
  monkeypatch.setattr(plots, '_save', lambda fig, path: saved.append(fig) or original(fig, path))
  assert draw(tmp_path / 'figure.png') is not None
  return saved[-1]


def test_figures_say_what_they_draw_with_values_and_seed_error_bars(monkeypatch, tmp_path):
  rows = compute_metrics(TWO_SEEDS + model('MTT', 60.0, {'fgsm': (30.0, 3.0), 'pgd': (20.0, 6.0)}))
  fig = _figures(
    monkeypatch, tmp_path, lambda p: plots.plot_robust_accuracy(rows, p, protocol='beard')
  )
  assert fig._suptitle.get_text().startswith('Robust accuracy (%) under each attack, untargeted')
  (ax,) = fig.axes
  assert ax.get_ylabel() == 'Accuracy on the test images (%)' and ax.get_xlabel()
  assert [t.get_text() for t in ax.get_xticklabels()] == ['Clean', 'FGSM', 'PGD']
  assert {'50.0', '15.0', '5.0', '60.0', '30.0', '20.0'} <= {t.get_text() for t in ax.texts}
  bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
  assert bars['DM'].errorbar is not None  # two seeds: std error bars
  assert bars['MTT'].errorbar is None  # one seed: none

  fig = _figures(monkeypatch, tmp_path, lambda p: plots.plot_metric_bars(rows, p, protocol='beard'))
  assert fig._suptitle.get_text().startswith('RR, AE and CREI (%) per method, untargeted')
  (ax,) = fig.axes
  assert ax.get_ylabel() == 'Score (%)' and '38.9' in {t.get_text() for t in ax.texts}
  assert any(c.errorbar is not None for c in ax.containers if isinstance(c, BarContainer))
