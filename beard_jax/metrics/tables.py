"""Text of tables built as pandas DataFrames: Markdown and 'mean ± std' cells.

pandas' own `to_markdown` needs `tabulate`, which this project does not depend on;
`frame_to_markdown` is the one Markdown writer of the boards, the report and the
comparison with the published numbers.
"""

from __future__ import annotations

import math
from collections.abc import Container

import pandas as pd

MISSING = '–'


def number_text(value: float | None, digits: int = 2) -> str:
  """`value` with `digits` decimals; '–' for None or NaN."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return MISSING
  return f'{round(value, digits):.{digits}f}'


def mean_std_text(mean: float | None, std: float | None, digits: int = 2, sep: str = ' ± ') -> str:
  """'50.74 ± 0.35'; the mean alone when `std` is None (one seed); '–' without a mean."""
  text = number_text(mean, digits)
  if text == MISSING or std is None:
    return text
  return f'{text}{sep}{number_text(std, digits)}'


def frame_to_markdown(frame: pd.DataFrame, left: Container[str] = ()) -> str:
  """A pipe table of `frame`'s cells as text (no index).

  Args:
    frame: the table; every cell is shown with `str`, '|' escaped, newlines as spaces.
    left: column names aligned left; the others are aligned right.

  Returns:
    The header line, the alignment line and one line per row, joined by newlines.
  """

  def cell(value) -> str:
    return str(value).replace('|', '\\|').replace('\n', ' ')

  columns = [str(c) for c in frame.columns]
  lines = ['| ' + ' | '.join(cell(c) for c in columns) + ' |']
  lines.append('|' + '|'.join('---' if c in left else '---:' for c in columns) + '|')
  for values in frame.itertuples(index=False, name=None):
    lines.append('| ' + ' | '.join(cell(v) for v in values) + ' |')
  return '\n'.join(lines)
