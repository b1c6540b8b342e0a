"""Renders boards as Markdown, CSV and one self-contained HTML page (pure functions).

Every table is a pandas DataFrame first (`frames`): CSV writes its numbers (two
decimals, a `_std` column beside each value: the population std over seeds, empty for
one seed); Markdown and HTML show its text: '50.74 ± 0.35', '–' for a missing value.
The accuracy tables (robust accuracy per attack and mode of every model) come first,
then the ranked boards. Rows left out of the ranking say 'not ranked:' and why.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

import pandas as pd

from beard_jax.leaderboard import frames
from beard_jax.leaderboard.boards import UNRANKED_CODES, AccuracyTable, Board, order_attacks
from beard_jax.metrics.tables import frame_to_markdown

_LEFT = ('Method', 'Notes')
_CSV_HEAD = ('board', 'protocol', 'training', 'mode', 'dataset', 'ipc')
_CSV_RENAMES = {'rr': 'rrm', 'rr_std': 'rrm_std', 'ae': 'aem', 'ae_std': 'aem_std'}


def _markdown_text(frame: pd.DataFrame, display: pd.DataFrame) -> str:
  display = display.copy()
  baseline = frame['baseline'].to_numpy(bool)
  display.loc[baseline, 'Method'] = [f'*{m}*' for m in display.loc[baseline, 'Method']]
  flagged = frame['not_ranked'].map(bool).to_numpy(bool)
  display.loc[flagged, 'Notes'] = [f'**{n}**' for n in display.loc[flagged, 'Notes']]
  return frame_to_markdown(display, left=_LEFT)


def _legend(code) -> str:
  """How to read the tables: what ± is and what each 'not ranked' code means."""
  codes = '; '.join(f'{code(c)}: {meaning}' for c, meaning in UNRANKED_CODES.items())
  return (
    'Values are means over seeds, two decimals; ± is the population standard deviation '
    'across seeds, each seed scored on its own. Rows marked "not ranked" are left out of '
    f'the ranking, because their CREI measures nothing: {codes}.'
  )


def to_markdown(
  boards: Iterable[Board], missing: Sequence[str] = (), accuracy: Iterable[AccuracyTable] = ()
) -> str:
  """All tables as Markdown: a `##` heading and a table each, accuracy tables first."""
  lines = ['# BEARD leaderboards', '', _legend(lambda c: f'`{c}`'), '']
  for table in accuracy:
    frame = frames.accuracy_frame(table)
    lines += [f'## {table.title}', '', _markdown_text(frame, frames.accuracy_display(frame)), '']
  for board in boards:
    frame = frames.board_frame(board)
    lines += [f'## {board.title}', '', _markdown_text(frame, frames.board_display(frame)), '']
  if missing:
    lines += ['## Boards without data', '']
    lines += [f'- {title}' for title in missing]
    lines.append('')
  return '\n'.join(lines)


def to_csv(boards: Iterable[Board]) -> str:
  """One CSV of every board's entries: board keys, then `board_frame`'s columns with rr/ae
  named rrm/aem, values rounded to two decimals, notes joined by '; '."""
  boards = list(boards)
  attacks = order_attacks(a for b in boards for a in frames.board_attacks(b))
  parts = []
  for board in boards:
    frame = frames.board_frame(board, attacks)
    keys = (board.slug, board.protocol, board.training, board.mode, board.dataset, board.ipc)
    for position, (name, value) in enumerate(zip(_CSV_HEAD, keys, strict=True)):
      frame.insert(position, name, [value] * len(frame))
    parts.append(frame)
  if not parts:
    return ','.join(_CSV_HEAD) + '\n'
  table = pd.concat(parts, ignore_index=True).rename(columns=_CSV_RENAMES).round(2)
  for column in ('not_ranked', 'degenerate'):
    table[column] = table[column].map('; '.join)
  table['worst_attack'] = table['worst_attack'].fillna('')
  return table.to_csv(index=False, lineterminator='\n')


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 110rem; color: #1d2330; background: #fff; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin-top: 2.2rem; }
nav ul { columns: 2; font-size: 0.9rem; padding-left: 1.2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
th, td { padding: 0.35rem 0.5rem; border-bottom: 1px solid #dde2ea; text-align: right; }
td { white-space: nowrap; }
th { background: #eef2f8; cursor: pointer; user-select: none; vertical-align: bottom; }
th:hover { background: #dde5f2; }
th[aria-sort=ascending]::after { content: ' \\25B2'; font-size: 0.7em; }
th[aria-sort=descending]::after { content: ' \\25BC'; font-size: 0.7em; }
td.method, th.method { text-align: left; }
td.notes, th.notes { text-align: left; white-space: normal; min-width: 12rem; }
td.notes { color: #a05a00; font-size: 0.8rem; }
span.std { color: #6b7280; font-size: 0.78rem; }
tr.baseline td { color: #6b7280; font-style: italic; background: #fafafa; }
tr.flagged td { background: #fff1e0; color: #7a4300; }
tr.flagged td.method::before { content: '\\26A0  '; }
tr.flagged td.notes { font-weight: 600; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #dde2ea; }
.empty { color: #6b7280; font-size: 0.9rem; }
"""

# Sorts a table by the clicked column: numbers by value, text alphabetically, missing
# values ('–' or empty) last in either direction; a second click reverses the order.
_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var up = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
    function key(row) {
      var text = row.cells[col].textContent.trim(), number = parseFloat(text);
      return {missing: text === '' || text === '\\u2013', number: number, text: text};
    }
    var rows = Array.prototype.slice.call(body.rows).map(function (r) { return [key(r), r]; });
    rows.sort(function (a, b) {
      var x = a[0], y = b[0];
      if (x.missing || y.missing) { return x.missing - y.missing; }
      var order = isNaN(x.number) || isNaN(y.number) ?
        x.text.localeCompare(y.text) : x.number - y.number;
      return up ? order : -order;
    });
    rows.forEach(function (pair) { body.appendChild(pair[1]); });
  });
});
"""


def _html_cell(text: str) -> str:
  """Escaped text; a '± std' goes on a second, smaller line."""
  mean, sep, std = text.partition(' ± ')
  if not sep:
    return html.escape(text)
  return f'{html.escape(mean)}<br><span class="std">± {html.escape(std)}</span>'


def _html_table(frame: pd.DataFrame, display: pd.DataFrame) -> str:
  """A sortable table of `display`'s text; rows classed `baseline` / `flagged` by `frame`."""
  classes = {'Method': ' class="method"', 'Notes': ' class="notes"'}
  head = ''.join(f'<th{classes.get(c, "")}>{html.escape(c)}</th>' for c in display.columns)
  body = []
  rows = zip(frame.itertuples(index=False), display.itertuples(index=False, name=None), strict=True)
  for numbers, texts in rows:
    cells = []
    for column, text in zip(display.columns, texts, strict=True):
      title = ''
      if column == 'Notes' and numbers.degenerate:
        title = f' title="{html.escape(chr(10).join(numbers.degenerate), quote=True)}"'
      cells.append(f'<td{classes.get(column, "")}{title}>{_html_cell(text)}</td>')
    row_class = 'baseline' if numbers.baseline else 'flagged' if numbers.not_ranked else ''
    row_class = f' class="{row_class}"' if row_class else ''
    body.append(f'<tr{row_class}>' + ''.join(cells) + '</tr>')
  return (
    f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
    f'<tbody>{"".join(body)}</tbody></table></div>'
  )


_INTRO = (
  '<p>First, the robust accuracy (%) of every model under each attack and mode, with its '
  'clean accuracy, RRM, AEM and CREI; then one board per dataset, IPC and mode, ranked by CREI '
  '(descending; ties by method name). Click a column header to sort by it; click again to '
  'reverse. Rows marked &#9888; are flagged; baseline rows are grey and not ranked.</p>'
)


def to_html(
  boards: Iterable[Board],
  missing: Sequence[str] = (),
  figures: Sequence[tuple[str, bytes]] = (),
  title: str = 'BEARD leaderboards',
  accuracy: Iterable[AccuracyTable] = (),
) -> str:
  """One HTML page, inline CSS and script, no external resources (works offline).

  Args:
    boards: the boards, in display order.
    missing: titles of boards without data, listed after the boards.
    figures: (caption, PNG bytes) pairs, embedded as data: URIs.
    title: page title.
    accuracy: the accuracy tables, shown first.
  """
  boards, accuracy = list(boards), list(accuracy)
  sections = [
    (t.slug, t.title, frames.accuracy_frame(t), frames.accuracy_display) for t in accuracy
  ]
  sections += [(b.slug, b.title, frames.board_frame(b), frames.board_display) for b in boards]
  parts = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    f'<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>',
    f'<h1>{html.escape(title)}</h1>',
    _INTRO,
    f'<p>{_legend(lambda c: f"<code>{c}</code>")}</p>',
    '<nav><ul>',
  ]
  parts += [f'<li><a href="#{slug}">{html.escape(name)}</a></li>' for slug, name, _, _ in sections]
  parts.append('</ul></nav>')
  for slug, name, frame, display in sections:
    parts.append(f'<section id="{slug}"><h2>{html.escape(name)}</h2>')
    parts.append(_html_table(frame, display(frame)) + '</section>')
  if missing:
    parts.append('<h2>Boards without data</h2><ul class="empty">')
    parts += [f'<li>{html.escape(t)}</li>' for t in missing]
    parts.append('</ul>')
  for caption, png in figures:
    data = base64.b64encode(png).decode('ascii')
    parts.append(
      f'<figure><img alt="{html.escape(caption, quote=True)}" src="data:image/png;base64,{data}">'
      f'<figcaption>{html.escape(caption)}</figcaption></figure>'
    )
  parts.append(f'<script>{_SCRIPT}</script></body></html>')
  return '\n'.join(parts)
