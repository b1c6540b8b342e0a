"""The two threat models the benchmark offers, and their attack suites.

* `beard` reproduces BEARD's published code (PROTOCOL.md §5), bugs included:
  the attacks receive mean/std-normalised tensors, ε and step sizes act in
  normalised units, every step clamps the normalised tensor to [0, 1], PGD's
  step is 2/225, targets are (y + 1) mod 10 for every dataset, DeepFool and
  AutoAttack run untargeted only (their targeted rows are clean accuracy) and
  AutoAttack is torchattacks' 10-iteration version. Its query attacks are its
  `epoch()` branches: Square (torchattacks' defaults, both modes) and `Spsa`, which
  runs torchattacks' SPSA with its defaults (one Adam step) when targeted and, by a
  slip of its code, AutoAttack when untargeted (`runs_instead`). Its transfer loop
  has no Square or Spsa branch and only prints for targeted DeepFool and AutoAttack,
  so those passes score clean images (`transfer_left_clean`).
* `standard` is the corrected threat model: attacks act on [0, 1] pixels with
  the normalisation inside the model, PGD step 2/255 with a random start,
  targets (y + 1) mod K, AutoAttack as its authors define it (and, targeted, its four
  stages against the given target: `attacks.autoattack`). It also offers APGD-CE/DLR/T,
  FAB-T and SPSA on their own, in both modes.

Every record names its protocol; the two are never reported as each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How attacks meet the model.

  Attributes:
    name: `standard` or `beard`.
    input_space: `pixels` ([0, 1] images, normalisation inside the model) or
      `normalized` (the attack sees mean/std-normalised tensors).
    target_modulus: targets are (y + 1) mod this; None means mod K.
    untargeted_only: attacks whose targeted cell is the clean accuracy
      (BEARD records clean accuracy there instead of running them).
    attack_hparams: attack name → keyword arguments for `attacks.get_attack`.
    runs_instead: (attack, targeted) → the attack the protocol's code really runs in
      that cell, with that attack's `attack_hparams` (records say so in `runs_as`).
    transfer_left_clean: (attack, targeted) pairs whose `--transfer` pass scores the
      clean images (what the protocol's transfer loop does with them).
    batch_size: the attack batch when the config leaves it 0 (C&W's early stop looks
      at the whole batch's loss, so its result depends on the partition).
    matmul_precision: JAX's float32 matmul/conv precision when the config leaves it
      '': 'highest' computes in float32 everywhere; 'default' lets NVIDIA GPUs use
      TF32, which moves a few images of a result.
  """

  name: str
  input_space: str
  target_modulus: int | None
  untargeted_only: frozenset[str]
  attack_hparams: dict[str, dict[str, Any]]
  batch_size: int
  matmul_precision: str
  runs_instead: dict[tuple[str, bool], str] = dataclasses.field(default_factory=dict)
  transfer_left_clean: frozenset[tuple[str, bool]] = frozenset()


_BOX = {'clip_min': 0.0, 'clip_max': 1.0}

BEARD = Protocol(
  name='beard',
  input_space='normalized',
  target_modulus=10,
  untargeted_only=frozenset({'deepfool', 'autoattack'}),
  attack_hparams={
    'fgsm': dict(eps=8 / 255, **_BOX),
    'pgd': dict(eps=8 / 255, step_size=2 / 225, steps=10, random_start=False, **_BOX),
    'pgd_l2': dict(eps=128 / 255, step_size=15 / 255, steps=10, random_start=False, **_BOX),
    'cw': dict(c=1.0, kappa=0.0, steps=100, lr=0.01, torchattacks_margin=True, **_BOX),
    'deepfool': dict(steps=50, overshoot=0.02, **_BOX),
    'autoattack': dict(eps=8 / 255, variant='torchattacks', **_BOX),
    'square': dict(eps=8 / 255, n_queries=5000, p_init=0.8, **_BOX),
    # torchattacks.SPSA(net, eps=8/255): nb_iter=1, lr=0.01, delta=0.01, nb_sample=128.
    'spsa': dict(eps=8 / 255, steps=1, lr=0.01, delta=0.01, nb_sample=128, **_BOX),
  },
  batch_size=256,  # BEARD's test loader.
  matmul_precision='highest',  # Its published accuracies are float32's (README).
  runs_instead={('spsa', False): 'autoattack'},  # eva_utils.epoch: `atk = AutoAttack(...)`.
  transfer_left_clean=frozenset(
    {
      ('deepfool', True),
      ('autoattack', True),
      *((a, t) for a in ('square', 'spsa') for t in (True, False)),
    }
  ),
)

STANDARD = Protocol(
  name='standard',
  input_space='pixels',
  target_modulus=None,
  untargeted_only=frozenset(),
  attack_hparams={
    'fgsm': dict(eps=8 / 255, **_BOX),
    'pgd': dict(eps=8 / 255, step_size=2 / 255, steps=10, random_start=True, **_BOX),
    'pgd_l2': dict(eps=128 / 255, step_size=15 / 255, steps=10, random_start=True, **_BOX),
    'cw': dict(c=1.0, kappa=0.0, steps=100, lr=0.01, torchattacks_margin=False, **_BOX),
    'deepfool': dict(steps=50, overshoot=0.02, **_BOX),
    'autoattack': dict(eps=8 / 255, variant='standard', **_BOX),
    'square': dict(eps=8 / 255, n_queries=5000, p_init=0.8, **_BOX),
    'apgd_ce': dict(eps=8 / 255, steps=100, **_BOX),
    'apgd_dlr': dict(eps=8 / 255, steps=100, **_BOX),
    'apgd_t': dict(eps=8 / 255, steps=100, n_target_classes=9, **_BOX),
    'fab_t': dict(eps=8 / 255, steps=100, n_target_classes=9, **_BOX),
    'spsa': dict(eps=8 / 255, steps=100, lr=0.01, delta=0.01, nb_sample=128, **_BOX),
  },
  batch_size=250,
  matmul_precision='default',
)

PROTOCOLS = {p.name: p for p in (STANDARD, BEARD)}


def targeted_exclusions(protocol_name: str) -> frozenset[str]:
  """Attacks whose targeted rows the metrics drop under `protocol_name`.

  Under `beard` these are the attacks it runs untargeted only (BEARD's toolkit drops
  targeted DeepFool and AutoAttack, whose targeted rows are clean accuracy); under
  `standard` every attack that ran counts. An unknown protocol name (published logs
  of other tools) takes `beard`'s.
  """
  protocol = PROTOCOLS.get(protocol_name, BEARD)
  return protocol.untargeted_only


def get_protocol(name: str) -> Protocol:
  """The protocol called `name`."""
  if name not in PROTOCOLS:
    raise ValueError(f'unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}')
  return PROTOCOLS[name]


def target_labels(protocol: Protocol, labels, num_classes: int):
  """Targets of the targeted mode: (y + 1) mod (protocol's modulus or K)."""
  modulus = protocol.target_modulus or num_classes
  return (labels + 1) % modulus
