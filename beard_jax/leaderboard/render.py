"""Renders boards as Markdown, CSV and one self-contained HTML page (pure functions).

Numbers are shown with two decimals (`round(x, 2)`, the toolkit's presentation); a
missing value is '–'. Baseline rows show rank '–' and the method as `full (baseline)`.
The Notes column lists the codes of the degenerate cases (`formulas.diagnose`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Iterable, Sequence

from beard_jax.leaderboard.boards import Board, Entry

COLUMNS = ('Rank', 'Method', 'CREI', 'RRM', 'AEM', 'Clean acc', 'Worst-case robust acc', 'Notes')
CSV_FIELDS = (
  'board',
  'protocol',
  'training',
  'mode',
  'dataset',
  'ipc',
  'rank',
  'method',
  'baseline',
  'crei',
  'rrm',
  'aem',
  'clean_acc',
  'worst_robust_acc',
  'worst_attack',
  'num_seeds',
  'degenerate',
)


def _number(value: float | None) -> str:
  return '–' if value is None else f'{round(value, 2):.2f}'


def _notes(entry: Entry) -> str:
  return ', '.join(note.split(':')[0] for note in entry.degenerate)


def _cells(entry: Entry) -> list[str]:
  return [
    '–' if entry.rank is None else str(entry.rank),
    f'{entry.method} (baseline)' if entry.baseline else entry.method,
    _number(entry.crei),
    _number(entry.rr),
    _number(entry.ae),
    _number(entry.clean_acc),
    _number(entry.worst_robust_acc),
    _notes(entry),
  ]


def to_markdown(boards: Iterable[Board], missing: Sequence[str] = ()) -> str:
  """All boards as Markdown: a `##` heading and a table per board."""
  lines = ['# BEARD leaderboards', '']
  for board in boards:
    lines += [f'## {board.title}', '']
    lines.append('| ' + ' | '.join(COLUMNS) + ' |')
    lines.append('|' + '|'.join('---:' if c != 'Method' else '---' for c in COLUMNS) + '|')
    for entry in board.entries:
      cells = [c.replace('|', '\\|') for c in _cells(entry)]
      if entry.baseline:
        cells[1] = f'*{cells[1]}*'
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  if missing:
    lines += ['## Boards without data', '']
    lines += [f'- {title}' for title in missing]
    lines.append('')
  return '\n'.join(lines)


def to_csv(boards: Iterable[Board]) -> str:
  """One CSV of every board's entries (values rounded to two decimals)."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(CSV_FIELDS)
  for board in boards:
    for e in board.entries:
      values = (e.crei, e.rr, e.ae, e.clean_acc, e.worst_robust_acc)
      writer.writerow(
        [
          board.slug,
          board.protocol,
          board.training,
          board.mode,
          board.dataset,
          board.ipc,
          '' if e.rank is None else e.rank,
          e.method,
          e.baseline,
          *('' if v is None else round(v, 2) for v in values),
          e.worst_attack or '',
          e.num_seeds,
          '; '.join(e.degenerate),
        ]
      )
  return out.getvalue()


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 64rem; color: #1d2330; background: #fff; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin-top: 2.2rem; }
nav ul { columns: 2; font-size: 0.9rem; padding-left: 1.2rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { padding: 0.35rem 0.6rem; border-bottom: 1px solid #dde2ea; text-align: right; }
th { background: #eef2f8; } td.method, th.method { text-align: left; }
td.notes { text-align: left; color: #a05a00; font-size: 0.8rem; }
tr.baseline td { color: #6b7280; font-style: italic; background: #fafafa; }
tbody tr:nth-child(1):not(.baseline) td { font-weight: 600; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #dde2ea; }
.empty { color: #6b7280; font-size: 0.9rem; }
"""


def _html_table(board: Board) -> str:
  head = ''.join(
    f'<th class="{"method" if c == "Method" else ""}">{html.escape(c)}</th>' for c in COLUMNS
  )
  body = []
  for entry in board.entries:
    cells = _cells(entry)
    notes = html.escape('\n'.join(entry.degenerate), quote=True)
    tds = [f'<td>{html.escape(c)}</td>' for c in cells[:-1]]
    tds[1] = f'<td class="method">{html.escape(cells[1])}</td>'
    tds.append(f'<td class="notes" title="{notes}">{html.escape(cells[-1])}</td>')
    row_class = ' class="baseline"' if entry.baseline else ''
    body.append(f'<tr{row_class}>' + ''.join(tds) + '</tr>')
  return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def to_html(
  boards: Iterable[Board],
  missing: Sequence[str] = (),
  figures: Sequence[tuple[str, bytes]] = (),
  title: str = 'BEARD leaderboards',
) -> str:
  """One HTML page with every board, inline CSS, no scripts and no external resources.

  Args:
    boards: the boards, in display order.
    missing: titles of boards without data, listed at the end.
    figures: (caption, PNG bytes) pairs, embedded as data: URIs.
    title: page title.
  """
  boards = list(boards)
  parts = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    f'<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>',
    f'<h1>{html.escape(title)}</h1>',
    '<p>Ranked by CREI (descending; ties by method name). RRM, AEM and CREI in percent, '
    'two decimals. Baseline rows are shown in grey and not ranked.</p>',
    '<nav><ul>',
  ]
  parts += [f'<li><a href="#{b.slug}">{html.escape(b.title)}</a></li>' for b in boards]
  parts.append('</ul></nav>')
  for board in boards:
    parts.append(f'<section id="{board.slug}"><h2>{html.escape(board.title)}</h2>')
    parts.append(_html_table(board) + '</section>')
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
  parts.append('</body></html>')
  return '\n'.join(parts)
