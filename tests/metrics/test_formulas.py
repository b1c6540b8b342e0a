"""RR, AE and CREI against values worked out by hand from PROTOCOL.md §6."""

import math

import numpy as np
import pytest

from beard_jax.metrics import formulas


def test_rr_beard_by_hand():
  # C=50, a=[10,20,30]: mean 20, min 10 -> 100*(20-10)/(50-10) = 25.0
  assert formulas.rr_beard(50.0, [10.0, 20.0, 30.0]) == pytest.approx(25.0, abs=1e-12)
  # C=40, a=[5,30,20,10]: mean 16.25, min 5 -> 100*11.25/35 = 225/7 = 32.142857...
  assert formulas.rr_beard(40.0, [5.0, 30.0, 20.0, 10.0]) == pytest.approx(225 / 7, abs=1e-12)


def test_rr_beard_degenerate_cases():
  # One attack: mean == min -> 0 whatever C is.
  assert formulas.rr_beard(50.0, [20.0]) == 0.0
  # C == min(a): defined as 0 (the ratio would be 0/0 or x/0).
  assert formulas.rr_beard(30.0, [30.0, 40.0]) == 0.0
  # An attack above C: C=20, a=[10,30]: 100*(20-10)/(20-10) = 100 -> leaves the "robust" scale.
  assert formulas.rr_beard(20.0, [10.0, 30.0]) == pytest.approx(100.0)


def test_rr_rome_by_hand():
  # C=50, a=[10,20,30]: (50-20)*(50-10)/50^2 = 1200/2500 = 0.48 -> 100*(1-0.48) = 52.0
  assert formulas.rr_rome(50.0, [10.0, 20.0, 30.0]) == pytest.approx(52.0, abs=1e-12)
  # C == 0 is undefined.
  assert math.isnan(formulas.rr_rome(0.0, [0.0]))


def test_rr_rome_plus_by_hand():
  # C=50, a=[10,20,60]: mean 30, min 10: (20*40)/2500 = 0.32 -> rome = 68.0
  # excess over C = [0, 0, 10], mean 10/3 -> rome+ = 68 - 0.01*(10/3)*100 = 68 - 10/3
  assert formulas.rr_rome(50.0, [10.0, 20.0, 60.0]) == pytest.approx(68.0, abs=1e-12)
  assert formulas.rr_rome_plus(50.0, [10.0, 20.0, 60.0]) == pytest.approx(68.0 - 10 / 3, abs=1e-12)


def test_rome_plus_equals_rome_without_excess():
  rng = np.random.default_rng(0)
  for _ in range(50):
    clean = float(rng.uniform(1, 100))
    accs = list(rng.uniform(0, clean, size=rng.integers(1, 7)))
    assert formulas.rr_rome_plus(clean, accs) == formulas.rr_rome(clean, accs)


def test_rr_beard_equals_asr_form():
  # RR = 100*(1 - mean(ASR)/max(ASR)), ASR_i = C - a_i.
  rng = np.random.default_rng(1)
  for _ in range(200):
    clean = float(rng.uniform(1, 100))
    accs = [float(a) for a in rng.uniform(0, clean, size=rng.integers(2, 8))]
    asr = [clean - a for a in accs]
    expected = 100.0 * (1.0 - np.mean(asr) / max(asr))
    assert formulas.rr_beard(clean, accs) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert 0.0 <= formulas.rr_beard(clean, accs) <= 100.0


def test_attack_efficiency_by_hand():
  # T0=1, t=[3,5,9]: mean 17/3 -> 100*(17/3-1)/(9-1) = 100*(14/3)/8 = 175/3 = 58.333...
  assert formulas.attack_efficiency(1.0, [3.0, 5.0, 9.0]) == pytest.approx(175 / 3, abs=1e-12)
  # One attack slower than T0 -> always 100.
  assert formulas.attack_efficiency(1.0, [7.3]) == pytest.approx(100.0)
  # max(t) == T0 -> defined as 0.
  assert formulas.attack_efficiency(2.0, [2.0, 2.0]) == 0.0
  assert formulas.attack_efficiency(2.0, [1.0, 2.0]) == 0.0


def test_crei_by_hand():
  rr, ae = 25.0, 175 / 3
  # 0.5*25 + 0.5*175/3 = 12.5 + 29.1666... = 41.666...
  assert formulas.crei(rr, ae) == pytest.approx(12.5 + 175 / 6, abs=1e-12)
  # 0.7*25 + 0.3*175/3 = 17.5 + 17.5 = 35.0
  assert formulas.crei(rr, ae, alpha=0.7) == pytest.approx(35.0, abs=1e-12)
  assert formulas.crei(rr, ae, alpha=1.0) == rr
  assert formulas.crei(rr, ae, alpha=0.0) == ae
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    formulas.crei(rr, ae, alpha=1.5)


def test_registry_names_choices():
  assert formulas.robustness_ratio(50.0, [10.0, 20.0, 30.0], 'rome') == pytest.approx(52.0)
  with pytest.raises(ValueError, match=r"choose from \['beard', 'rome', 'rome\+'\]"):
    formulas.get_rr_fn('robustbench')
  with pytest.raises(ValueError, match='at least one attack'):
    formulas.rr_beard(50.0, [])


def test_diagnose_codes():
  codes = lambda notes: sorted(n.split(':')[0] for n in notes)  # noqa: E731
  assert formulas.diagnose(50.0, [10.0, 20.0], 1.0, [3.0, 5.0], ['fgsm', 'pgd']) == []
  assert codes(formulas.diagnose(50.0, [20.0], 1.0, [3.0], ['fgsm'])) == ['single_attack']
  notes = formulas.diagnose(30.0, [30.0, 40.0], 2.0, [1.0, 2.0], ['fgsm', 'cw'])
  assert codes(notes) == [
    'attack_above_clean',
    'attack_faster_than_clean',
    'clean_equals_min_acc',
    'max_time_equals_clean_time',
  ]
  assert "['cw']" in next(n for n in notes if n.startswith('attack_above_clean'))
  assert codes(formulas.diagnose(0.0, [0.0, 0.0], 1.0, [2.0, 3.0], ['a', 'b'], 'rome')) == [
    'clean_acc_zero',
    'clean_equals_min_acc',
  ]


def test_present_value_rounds_only_on_request():
  assert formulas.present_value(225 / 7) == 32.14
  assert formulas.present_value(225 / 7, None) == 225 / 7
  assert formulas.present_value(math.nan) is None
  assert formulas.present_value(None) is None
