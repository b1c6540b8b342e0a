"""compute_metrics on hand-made records, every expected number worked out by hand."""

import pytest

from beard_jax.metrics import compute_metrics, present_row


def rec(attack, targeted, acc, seconds, *, ipc=1, seed=0, method='DM', training='standard'):
  return {
    'method': method,
    'dataset': 'cifar10',
    'ipc': ipc,
    'seed': seed,
    'protocol': 'beard',
    'training': training,
    'attack': attack,
    'targeted': targeted,
    'clean_acc': acc if attack == 'clean' else None,
    'robust_acc': acc,
    'attack_seconds': seconds,
  }


# IPC 1: C = 40; T0 targeted 2.0, untargeted 1.5.
IPC1 = [
  rec('clean', True, 40.0, 2.0),
  rec('clean', False, 40.0, 1.5),
  rec('fgsm', False, 20.0, 3.5),
  rec('pgd', False, 10.0, 5.5),
  rec('deepfool', False, 30.0, 9.5),
  rec('aa', False, 5.0, 21.5),
  rec('fgsm', True, 30.0, 3.0),
  rec('pgd', True, 25.0, 6.0),
  rec('DeepFool', True, 40.0, 1.0),
  rec('AutoAttack', True, 40.0, 0.5),
]
# IPC 10: C = 60; T0 targeted 4.0, untargeted 3.0.
IPC10 = [
  rec('clean', True, 60.0, 4.0, ipc=10),
  rec('clean', False, 60.0, 3.0, ipc=10),
  rec('fgsm', False, 30.0, 5.0, ipc=10),
  rec('pgd', False, 20.0, 7.0, ipc=10),
]


def pick(rows, *, ipc, targeted, adversary='all'):
  found = [
    r for r in rows if r['ipc'] == ipc and r['targeted'] == targeted and r['adversary'] == adversary
  ]
  assert len(found) == 1, found
  return found[0]


def test_per_ipc_untargeted_toolkit():
  row = pick(compute_metrics(IPC1), ipc=1, targeted=False)
  # a = [5 (aa), 30 (deepfool), 20 (fgsm), 10 (pgd)]: mean 16.25, min 5
  # RR = 100*(16.25-5)/(40-5) = 1125/35 = 225/7 = 32.142857...
  assert row['rr'] == pytest.approx(225 / 7, abs=1e-12)
  # T0 = min(2.0, 1.5) = 1.5; t = [21.5, 9.5, 3.5, 5.5]: mean 10
  # AE = 100*(10-1.5)/(21.5-1.5) = 850/20 = 42.5
  assert row['ae'] == pytest.approx(42.5, abs=1e-12)
  assert row['crei'] == pytest.approx((225 / 7 + 42.5) / 2, abs=1e-12)
  assert row['clean_acc'] == 40.0 and row['clean_seconds'] == 1.5
  assert (row['worst_robust_acc'], row['worst_attack']) == (5.0, 'aa')
  assert row['attacks'] == ['aa', 'deepfool', 'fgsm', 'pgd'] and row['attacks_dropped'] == []
  assert row['num_seeds'] == 1 and row['degenerate'] == []
  # Full precision is kept; rounding is presentation only.
  assert present_row(row)['rr'] == 32.14 and row['rr'] != 32.14


def test_targeted_drops_deepfool_and_aa_and_clean_time_rules():
  rows = compute_metrics(IPC1)
  row = pick(rows, ipc=1, targeted=True)
  assert row['attacks'] == ['fgsm', 'pgd']
  assert row['attacks_dropped'] == ['aa', 'deepfool']
  # a = [30, 25]: mean 27.5, min 25 -> 100*2.5/15 = 50/3
  assert row['rr'] == pytest.approx(50 / 3, abs=1e-12)
  # toolkit T0 = 1.5; t = [3, 6]: mean 4.5 -> 100*(4.5-1.5)/(6-1.5) = 200/3
  assert row['ae'] == pytest.approx(200 / 3, abs=1e-12)
  paper = pick(compute_metrics(IPC1, clean_time='paper'), ipc=1, targeted=True)
  # paper T0 = targeted clean time 2.0 -> 100*(4.5-2)/(6-2) = 62.5
  assert paper['clean_seconds'] == 2.0
  assert paper['ae'] == pytest.approx(62.5, abs=1e-12)
  # The untargeted clean time is already the minimum: both rules agree there.
  untargeted = pick(compute_metrics(IPC1, clean_time='paper'), ipc=1, targeted=False)
  assert untargeted['ae'] == pytest.approx(42.5, abs=1e-12)


def test_combined_pools_attacks_and_averages_clean():
  rows = compute_metrics(IPC1 + IPC10)
  ipc10 = pick(rows, ipc=10, targeted=False)
  # C=60, a=[30,20]: mean 25, min 20 -> 100*5/40 = 12.5; T0=3, t=[5,7] -> 100*3/4 = 75
  assert ipc10['rr'] == pytest.approx(12.5) and ipc10['ae'] == pytest.approx(75.0)
  row = pick(rows, ipc='combined', targeted=False)
  assert row['ipcs'] == [1, 10]
  # C = (40+60)/2 = 50; a = [5,30,20,10,30,20]: sum 115, mean 115/6, min 5
  # RR = 100*(115/6-5)/(50-5) = 100*(85/6)/45 = 8500/270 = 31.48148...
  assert row['clean_acc'] == 50.0
  assert row['rr'] == pytest.approx(8500 / 270, abs=1e-12)
  # T0 = (1.5+3)/2 = 2.25; t = [21.5,9.5,3.5,5.5,5,7]: mean 52/6
  # AE = 100*(52/6-9/4)/(21.5-9/4) = 100*(77/12)/(77/4) = 100/3
  assert row['clean_seconds'] == 2.25
  assert row['ae'] == pytest.approx(100 / 3, abs=1e-12)
  assert row['worst_robust_acc'] == 5.0
  assert row['attack_ipcs'] == [1, 1, 1, 1, 10, 10]
  # IPC 10 has no targeted records: the targeted combined row is IPC 1 only.
  assert pick(rows, ipc='combined', targeted=True)['ipcs'] == [1]
  # Order: IPCs ascending, 'combined' after them.
  untargeted = [r['ipc'] for r in rows if not r['targeted']]
  assert untargeted == [1, 10, 'combined']


def test_seeds_are_averaged_before_the_formulas():
  records = [
    rec('clean', False, 50.0, 1.0, seed=0),
    rec('clean', False, 50.0, 1.0, seed=1),
    rec('fgsm', False, 10.0, 2.0, seed=0),
    rec('fgsm', False, 20.0, 4.0, seed=1),
    rec('pgd', False, 0.0, 6.0, seed=0),
    rec('pgd', False, 10.0, 8.0, seed=1),
  ]
  row = pick(compute_metrics(records, clean_time='paper'), ipc=1, targeted=False)
  # Means: fgsm 15 @ 3s, pgd 5 @ 7s. RR = 100*(10-5)/(50-5) = 100/9 = 11.11...
  # (the mean of per-seed RRs would be (10 + 12.5)/2 = 11.25)
  assert row['rr'] == pytest.approx(100 / 9, abs=1e-12)
  # AE = 100*(5-1)/(7-1) = 200/3
  assert row['ae'] == pytest.approx(200 / 3, abs=1e-12)
  assert row['num_seeds'] == 2 and row['degenerate'] == []
  uneven = compute_metrics(records[:-1], clean_time='paper')
  assert pick(uneven, ipc=1, targeted=False)['num_seeds'] == 1
  assert any(n.startswith('unequal_seed_counts') for n in uneven[0]['degenerate'])


def test_single_adversary_rows_are_degenerate_and_reported():
  rows = compute_metrics(IPC10, adversaries='single')
  assert sorted(r['adversary'] for r in rows if r['ipc'] == 10) == ['fgsm', 'pgd']
  fgsm = pick(rows, ipc=10, targeted=False, adversary='fgsm')
  assert fgsm['rr'] == 0.0 and fgsm['ae'] == 100.0 and fgsm['crei'] == 50.0
  assert any(n.startswith('single_attack') for n in fgsm['degenerate'])
  # Combined single-adversary pools the one attack over the IPCs.
  both = compute_metrics(IPC1 + IPC10, adversaries='both')
  pooled = pick(both, ipc='combined', targeted=False, adversary='fgsm')
  # C = 50, a = [20, 30]: mean 25, min 20 -> 100*5/30 = 50/3
  assert pooled['rr'] == pytest.approx(50 / 3, abs=1e-12)
  assert pick(both, ipc='combined', targeted=False)['rr'] == pytest.approx(8500 / 270)
  # AA exists at IPC 1 only: its combined row uses IPC 1's C and T0, not the mean over IPCs.
  aa = pick(both, ipc='combined', targeted=False, adversary='aa')
  assert aa['ipcs'] == [1] and aa['clean_acc'] == 40.0 and aa['clean_seconds'] == 1.5


def test_degenerate_cases_reported():
  records = [
    rec('clean', False, 30.0, 2.0),
    rec('fgsm', False, 30.0, 2.0),
    rec('cw', False, 35.0, 1.0),
  ]
  row = pick(compute_metrics(records, clean_time='paper'), ipc=1, targeted=False)
  # min(a) == C -> beard RR 0; max(t) == T0 -> AE 0.
  assert row['rr'] == 0.0 and row['ae'] == 0.0
  codes = sorted(n.split(':')[0] for n in row['degenerate'])
  assert codes == [
    'attack_above_clean',
    'attack_faster_than_clean',
    'clean_equals_min_acc',
    'max_time_equals_clean_time',
  ]
  # rome+ charges the 5-point excess: rome = 100*(1-(30-32.5)*(30-30)/900) = 100; rome+ = 100-2.5
  rome_plus = pick(compute_metrics(records, metrics_type='rome+'), ipc=1, targeted=False)
  assert rome_plus['rr'] == pytest.approx(97.5)
  # Only DeepFool/AA in targeted mode -> no attack left: values None and a note.
  only_excluded = [rec('clean', True, 30.0, 2.0), rec('deepfool', True, 30.0, 9.0)]
  empty = pick(compute_metrics(only_excluded), ipc=1, targeted=True)
  assert empty['rr'] is None and empty['crei'] is None
  assert any(n.startswith('no_attacks') for n in empty['degenerate'])


def test_missing_clean_records():
  # Toolkit T0 with one clean pass: uses it and says so.
  row = pick(compute_metrics(IPC10[1:]), ipc=10, targeted=False)
  assert row['clean_seconds'] == 3.0
  assert any(n.startswith('toolkit_t0_one_mode') for n in row['degenerate'])
  with pytest.raises(ValueError, match='no clean record'):
    compute_metrics(IPC10[2:])


def test_bad_input_fails_loudly():
  with pytest.raises(ValueError, match='duplicate record'):
    compute_metrics(IPC10 + IPC10[:1])
  with pytest.raises(ValueError, match=r"lacks fields \['attack_seconds'\]"):
    compute_metrics([{k: v for k, v in IPC10[0].items() if k != 'attack_seconds'}])
  with pytest.raises(ValueError, match='choose from'):
    compute_metrics(IPC10, metrics_type='nope')
  with pytest.raises(ValueError, match='choose from'):
    compute_metrics(IPC10, clean_time='fastest')
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    compute_metrics(IPC10, alpha=-0.1)


def test_training_and_methods_are_separate_rows():
  records = (
    IPC10
    + [
      rec(
        r['attack'],
        r['targeted'],
        r['robust_acc'] + 1,
        r['attack_seconds'],
        ipc=10,
        training='adversarial',
      )
      for r in IPC10
    ]
    + [
      rec(r['attack'], r['targeted'], r['robust_acc'], r['attack_seconds'], ipc=10, method='DC')
      for r in IPC10
    ]
  )
  rows = [r for r in compute_metrics(records) if r['ipc'] == 10 and not r['targeted']]
  keys = [(r['method'], r['training']) for r in rows]
  assert keys == [('DC', 'standard'), ('DM', 'adversarial'), ('DM', 'standard')]
  at = rows[1]
  # C=61, a=[31,21]: mean 26, min 21 -> 100*5/40 = 12.5 (a shift leaves beard RR unchanged)
  assert at['rr'] == pytest.approx(12.5) and at['clean_acc'] == 61.0


def test_clean_at_or_below_chance_is_noted():
  # CIFAR-10 has 10 classes: chance is 10 %. 9.5 % is flagged even though attacks moved it.
  low = [rec('clean', False, 9.5, 1.0), rec('fgsm', False, 5.0, 2.0), rec('pgd', False, 2.0, 3.0)]
  row = pick(compute_metrics(low), ipc=1, targeted=False)
  codes = [n.split(':')[0] for n in row['degenerate']]
  assert 'clean_at_chance' in codes and 'clean_equals_min_acc' not in codes
  note = next(n for n in row['degenerate'] if n.startswith('clean_at_chance'))
  assert 'C = 9.50 % is at or below chance (10.00 % for 10 classes)' in note
  zero = [rec('clean', False, 0.0, 1.0), rec('fgsm', False, 0.0, 2.0)]
  assert any(
    n.startswith('clean_at_chance')
    for n in pick(compute_metrics(zero), ipc=1, targeted=False)['degenerate']
  )
  # Above chance: no note; a dataset we know nothing of: no note either.
  assert pick(compute_metrics(IPC10), ipc=10, targeted=False)['degenerate'] == []
  unknown = [{**r, 'dataset': 'mnist-ish'} for r in low]
  assert not any(
    n.startswith('clean_at_chance')
    for n in pick(compute_metrics(unknown), ipc=1, targeted=False)['degenerate']
  )


def test_seed_spread_by_hand():
  records = [
    rec('clean', False, 50.0, 1.0, seed=0),
    rec('clean', False, 50.0, 1.0, seed=1),
    rec('fgsm', False, 10.0, 2.0, seed=0),
    rec('fgsm', False, 20.0, 4.0, seed=1),
    rec('pgd', False, 0.0, 6.0, seed=0),
    rec('pgd', False, 10.0, 8.0, seed=1),
  ]
  row = pick(compute_metrics(records, clean_time='paper'), ipc=1, targeted=False)
  # The headline stays seeds-averaged-first (see test_seeds_are_averaged_before_the_formulas).
  assert row['rr'] == pytest.approx(100 / 9, abs=1e-12)
  # Per seed: RR 100*5/50 = 10 and 100*5/40 = 12.5; AE 100*3/5 = 60 and 100*5/7;
  # CREI 35 and (12.5 + 500/7)/2; worst 0 and 10. Population std = |a - b| / 2.
  std = row['seed_std']
  assert std['rr'] == pytest.approx(1.25, abs=1e-12)
  assert std['ae'] == pytest.approx((500 / 7 - 60) / 2, abs=1e-12)
  assert std['crei'] == pytest.approx(((12.5 + 500 / 7) / 2 - 35) / 2, abs=1e-12)
  assert std['clean_acc'] == 0.0 and std['worst_robust_acc'] == pytest.approx(5.0)
  assert std['robust_acc/fgsm'] == pytest.approx(5.0) and std['robust_acc/pgd'] == pytest.approx(
    5.0
  )
  assert row['seed_std_seeds'] == [0, 1]
  # A third seed that lacks pgd scores other attacks: it stays out of the spread.
  partial = records + [
    rec('clean', False, 50.0, 1.0, seed=2),
    rec('fgsm', False, 30.0, 3.0, seed=2),
  ]
  row = pick(compute_metrics(partial, clean_time='paper'), ipc=1, targeted=False)
  assert row['seed_std_seeds'] == [0, 1] and row['seed_std']['rr'] == pytest.approx(1.25)
  # One seed: no spread.
  single = pick(compute_metrics(records[::2], clean_time='paper'), ipc=1, targeted=False)
  assert (single['seed_std'], single['seed_std_seeds']) == ({}, [])


def test_combined_seed_spread_pools_each_seeds_ipcs():
  records = [
    r
    for seed, shift in ((0, 0.0), (1, 4.0))
    for r in (
      rec('clean', False, 40.0, 1.0, seed=seed),
      rec('fgsm', False, 20.0 + shift, 2.0, seed=seed),
      rec('clean', False, 60.0, 1.0, ipc=10, seed=seed),
      rec('fgsm', False, 30.0 + shift, 2.0, ipc=10, seed=seed),
    )
  ]
  row = pick(compute_metrics(records), ipc='combined', targeted=False)
  # Per seed the combined FGSM accuracy is the mean over IPCs: 25 and 29 -> std 2.
  assert row['seed_std']['robust_acc/fgsm'] == pytest.approx(2.0)
  assert row['seed_std']['clean_acc'] == 0.0


def test_targeted_exclusions_follow_each_records_protocol():
  # beard drops targeted DeepFool and AA (its code does not run them); standard ran them,
  # so they count (a fixed {'deepfool', 'aa'} dropped them from standard runs too).
  beard = [
    rec('clean', True, 40.0, 2.0),
    rec('pgd', True, 25.0, 6.0),
    rec('deepfool', True, 10.0, 9.0),
  ]
  standard = [dict(r, protocol='standard') for r in beard]
  beard_row = pick(compute_metrics(beard), ipc=1, targeted=True)
  standard_row = pick(compute_metrics(standard), ipc=1, targeted=True)
  assert beard_row['attacks'] == ['pgd'] and beard_row['attacks_dropped'] == ['deepfool']
  assert standard_row['attacks'] == ['deepfool', 'pgd'] and standard_row['attacks_dropped'] == []
  assert standard_row['worst_robust_acc'] == 10.0
