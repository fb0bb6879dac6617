"""The report page: one self-contained HTML file that opens offline, plotly.js inlined once.

The page is laid out from the report's tables and charts only. Every id, brand, group and
label is untrusted text and is escaped; a section without data says so instead of failing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from misterp.mrp.config import CertaintySettings, FlagRule, FlagSettings
from misterp.mrp.data import ALL_MARKETS
from misterp.reporting import tables as t
from misterp.reporting.charts import (
    PALETTE,
    SAMPLE_SHARES,
    Chart,
    association_charts,
    comparison_charts,
    funnel_charts,
    trend_charts,
)
from misterp.reporting.milestones import DATE, MARKET, MILESTONE
from misterp.reporting.smoothed import smoothed_section
from misterp.reporting.tables import ReportTables, kpi_name

__all__ = ["SECTIONS", "PageContext", "charts_grid", "document", "empty", "escape", "render_page"]

#: Section ids of the page, in order, with their headings.
SECTIONS: dict[str, str] = {
    "headline": "Headline",
    "trends": "Trends",
    "smoothed": "Smoothed trend",
    "funnel": "Funnel",
    "comparisons": "Group vs rest, brand vs brand",
    "associations": "Brand associations",
    "comparison": "MRP vs raw vs raked",
    "audiences": "Audience sizes",
    "downloads": "Tables and notes",
}


@dataclass(frozen=True)
class PageContext:
    """What the page says about the wave beside its tables.

    The ``*_note`` fields say why a section has no data (None: it has data, or nothing to say).
    """

    wave: str
    published_at: str | None
    health: str
    headline_group: str
    interval: float
    change_probability: float
    trend_waves: int
    low_base: int
    flags: FlagSettings = field(default_factory=FlagSettings)
    certainty: CertaintySettings = field(default_factory=CertaintySettings)
    changes_note: str | None = None
    trends_note: str | None = None
    labels_note: str | None = None


#: The marker symbols of the charts, as text for the page's legends.
_SYMBOLS = {"x": "✖", "diamond": "◆", "circle": "●"}


def _e(value: object) -> str:
    """Escape text (and attribute values) for HTML."""
    return html.escape(str(value), quote=True)


#: Public name of the page's escaping, for the other pages built on this skeleton.
escape = _e


def _missing(value: object) -> bool:
    """No number: None, pandas' NA or NaN (a failed model has no estimate)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value: object, suffix: str = "", *, signed: bool = False, digits: int = 1) -> str:
    """A number as the tables round it, or nothing for a missing one."""
    if _missing(value):
        return ""
    number = float(str(value))
    return f"{number:{'+' if signed else ''}.{digits}f}{suffix}"


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


#: A section's "no data, and why" paragraph, for the other pages built on this skeleton.
empty = _empty


def _headline_rows(rows: pd.DataFrame, has_labels: bool) -> str:
    body = []
    for _, row in rows.iterrows():
        flag = str(row[t.FLAG])
        arrow = str(row[t.DIRECTION])
        if arrow:
            change = f'<span class="arrow {_e(flag)}">{_e(arrow)}</span> '
            change += _e(_number(row[t.CHANGE], " pts", signed=True))
            title = f"{row[t.CHANGE_LOWER]:+.1f} to {row[t.CHANGE_UPPER]:+.1f} pts"
        else:
            change = f'<span class="muted">{_e(flag)}</span>'
            title = str(row[t.NOTE]) or flag
        base_mark = str(row[t.BASE_FLAG])
        base = "" if _missing(row[t.BASE_N]) else _e(row[t.BASE_N])
        if base_mark:
            base += f' <span class="lowbase" title="{_e(base_mark)}">⚠ {_e(base_mark)}</span>'
        status = str(row[t.STATUS])
        question = _e(row[t.QUESTION])
        if has_labels:
            question = f'{_e(row[t.LABEL])} <span class="muted">{question}</span>'
        grade = str(row.get(t.CERTAINTY, ""))
        mark = t.CERTAINTY_MARKS.get(grade.replace(" ", "_"), "")
        estimate = (
            f"<b>{_e(_number(row[t.ESTIMATE], '%'))}</b>"
            if not _missing(row[t.ESTIMATE])
            else f'<span class="muted">{_e(t.TOO_UNCERTAIN)}</span>'
        )
        if mark:
            estimate += f' <span class="grade" title="certainty: {_e(grade)}">{_e(mark)}</span>'
        cells = [
            _e(row[t.BRAND]),
            question,
            _e(row[t.OPTION]),
            estimate,
            _e(f"{_number(row[t.LOWER])}-{_number(row[t.UPPER])}"),
            f'<span title="{_e(title)}">{change}</span>',
            _e(_number(row[t.P_UP], digits=3)),
            _e(_number(row[t.P_DOWN], digits=3)),
            base,
            _e(status) if status == "converged" else f'<span class="warn">{_e(status)}</span>',
        ]
        low = ' class="low"' if base_mark else ""
        body.append(f"<tr{low}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(body)


def _headline_section(tables: ReportTables, context: PageContext) -> str:
    headline = tables.headline
    if headline.empty:
        return _empty(f"No estimates for the target group '{context.headline_group}' in this wave.")
    level = f"{context.interval * 100:.0f}%"
    parts = []
    if context.changes_note:
        parts.append(_empty(context.changes_note))
    has_labels = t.LABEL in headline
    reference = ", ".join(sorted({w for w in headline[t.REFERENCE_WAVES] if w}))
    versus = f"Change vs {reference}" if reference else "Change"
    heads = ["Brand", "Question", "Option", "Estimate", f"{level} interval", versus]
    heads += ["P(up)", "P(down)", "Base n", "Status"]
    parts.append(
        f'<p class="lead">Arrows: {_e(_rule_words(context))}. Certainty of the estimate: '
        f"{_e(_grade_words(context.certainty))}.</p>"
    )
    for market, rows in headline.groupby(t.MARKET, sort=False):
        parts.append(
            f'<h3>{_e(market)}</h3><table class="headline" data-market="{_e(market)}">'
            "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr></thead>"
            f"<tbody>{_headline_rows(rows, has_labels)}</tbody></table>"
        )
    return "\n".join(parts)


def _audiences_section(tables: ReportTables, context: PageContext) -> str:
    """Each target group's share of its market's population; audiences on profiles first."""
    audiences = tables.audiences
    if audiences.empty:
        return _empty("No audience sizes in this wave (published before audiences.parquet).")
    level = f"{context.interval * 100:.0f}%"
    heads = ["Group", "Defined on profiles", "Share of population", f"{level} interval", "Status"]
    parts = [
        '<p class="lead">How many people each target group is: a group on census demographics '
        "has the census's share; an audience on a profile variable (e.g. category users) has a "
        "modelled share, the category penetration, with its interval.</p>"
    ]
    for market, rows in audiences.groupby(t.MARKET, sort=False):
        rows = rows.assign(_census=rows[t.PROFILES].eq("")).sort_values("_census", kind="stable")
        body = []
        for _, row in rows.iterrows():
            status = str(row[t.STATUS])
            cells = [
                _e(row[t.GROUP]),
                _e(row[t.PROFILES]) or '<span class="muted">census</span>',
                f"<b>{_e(_number(row[t.SHARE], '%'))}</b>",
                _e(f"{_number(row[t.SHARE_LOWER])}-{_number(row[t.SHARE_UPPER])}")
                if row[t.PROFILES]
                else '<span class="muted">census count</span>',
                _e(status) if status == "converged" else f'<span class="warn">{_e(status)}</span>',
            ]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(
            f'<h3>{_e(market)}</h3><table class="audiences" data-market="{_e(market)}">'
            "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
        )
    return "\n".join(parts)


def _milestones_list(milestones: pd.DataFrame) -> str:
    """The wave's milestones as a short list (nothing without any)."""
    if milestones.empty:
        return ""
    items = "".join(
        f"<li><b>{_e(day)}</b> {_e(label)} "
        f'<span class="muted">({_e("all markets" if market == ALL_MARKETS else market)})</span>'
        "</li>"
        for day, market, label in zip(
            milestones[DATE], milestones[MARKET], milestones[MILESTONE], strict=True
        )
    )
    return f'<ul class="milestones">{items}</ul>'


#: At most this many rows of the group-vs-rest matrix and brand matrices on the page; the
#: sheets hold them all.
_MAX_MATRIX_ROWS = 40
_MAX_BRAND_MATRICES = 12


def _matrix(heads: Sequence[str], rows: Sequence[Sequence[str]], kind: str, market: str) -> str:
    return (
        f'<table class="data matrix" data-kind="{_e(kind)}" data-market="{_e(market)}"><thead>'
        "<tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in heads)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        + "</tbody></table>"
    )


def _arrow_cell(flag: str, text: str) -> str:
    arrow = t.COMPARISON_ARROWS.get(flag, "")
    if flag in ("above", "below"):
        css = "up" if flag == "above" else "down"
        return f'<span class="arrow {css}">{_e(arrow)}</span> {_e(text)}'
    return f'<span class="muted">{_e(text)}</span>'


def _comparisons_section(tables: ReportTables, context: PageContext) -> str:
    """Compact matrices: flagged group-vs-rest differences, and P(row brand above column)."""
    versus_rest, pairs = tables.group_vs_rest, tables.brand_vs_brand
    if versus_rest.empty and pairs.empty:
        return _empty(
            "No group vs rest or brand vs brand comparisons in this wave (published before "
            "comparisons.parquet existed, or no target groups and brand families)."
        )
    parts = [
        f'<p class="lead">Flags: {_e(_rule_words(context))}. Every comparison is in the '
        "sheets group_vs_rest and brand_vs_brand.</p>"
    ]
    if not versus_rest.empty:
        parts.append(
            "<h3>Target group vs the rest of the population</h3><p>Rows with at least one "
            "flag; a cell is the group minus everyone else in its market, in points.</p>"
        )
        for market, rows in versus_rest.groupby(t.MARKET, sort=False):
            groups = list(dict.fromkeys(rows[t.GROUP]))
            rows = rows.assign(
                _kpi=[kpi_name(q, o) for q, o in zip(rows[t.QUESTION], rows[t.OPTION], strict=True)]
            )
            flagged = rows.groupby("_kpi", sort=False)[t.COMPARISON_FLAG].transform(
                lambda f: f.isin(["above", "below"]).any()
            )
            kpis = list(dict.fromkeys(rows.loc[flagged.astype(bool), "_kpi"]))
            if not kpis:
                parts.append(_empty(f"{market}: no target group flagged above or below its rest."))
                continue
            cells = rows.set_index(["_kpi", t.GROUP])
            body = []
            for kpi in kpis[:_MAX_MATRIX_ROWS]:
                line = [_e(kpi)]
                for group in groups:
                    if (kpi, group) not in cells.index:
                        line.append("")
                        continue
                    cell = cells.loc[(kpi, group)]
                    line.append(
                        _arrow_cell(
                            str(cell[t.COMPARISON_FLAG]), _number(cell[t.DIFFERENCE], signed=True)
                        )
                    )
                body.append(line)
            parts.append(
                f"<h4>{_e(market)}</h4>"
                + _matrix(["", *groups], body, "group_vs_rest", str(market))
            )
            if len(kpis) > _MAX_MATRIX_ROWS:
                parts.append(
                    _empty(f"{len(kpis) - _MAX_MATRIX_ROWS} more flagged rows in the sheet.")
                )
    group = context.headline_group
    shown = pairs[pairs[t.GROUP] == group] if not pairs.empty else pairs
    if not shown.empty:
        parts.append(
            f"<h3>Brand vs brand ({_e(group)})</h3><p>P(row brand above column brand); "
            "▲/▼ where the rule flags it.</p>"
        )
        keys = list(
            dict.fromkeys(zip(shown[t.MARKET], shown[t.FAMILY], shown[t.OPTION], strict=True))
        )
        for market, family, option in keys[:_MAX_BRAND_MATRICES]:
            part = shown[
                (shown[t.MARKET] == market)
                & (shown[t.FAMILY] == family)
                & (shown[t.OPTION] == option)
            ]
            brands = sorted(set(part[t.BRAND]) | set(part[t.VERSUS]))
            probability: dict[tuple[str, str], tuple[float, str]] = {}
            for row in part.to_dict("records"):
                flag = str(row[t.COMPARISON_FLAG])
                mirrored = {"above": "below", "below": "above"}.get(flag, flag)
                probability[(row[t.BRAND], row[t.VERSUS])] = (float(row[t.P_ABOVE]), flag)
                probability[(row[t.VERSUS], row[t.BRAND])] = (float(row[t.P_BELOW]), mirrored)
            body = []
            for first in brands:
                line = [_e(first)]
                for second in brands:
                    known = probability.get((first, second))
                    line.append("" if known is None else _arrow_cell(known[1], f"{known[0]:.2f}"))
                body.append(line)
            title = kpi_name(family, option)
            parts.append(
                f"<h4>{_e(market)} · {_e(title)}</h4>"
                + _matrix(["", *brands], body, "brand_vs_brand", market)
            )
        if len(keys) > _MAX_BRAND_MATRICES:
            parts.append(_empty(f"{len(keys) - _MAX_BRAND_MATRICES} more families in the sheet."))
    return "\n".join(parts)


def charts_grid(charts: Sequence[Chart], section: str) -> str:
    """The section's charts in the page's grid; each only calls the page's one plotly.js."""
    figures = []
    for number, chart in enumerate(charts):
        div = chart.figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"{section}-{number}",
            default_width="100%",
            config={"displaylogo": False, "responsive": True},
        )
        wide = " full" if chart.full else " wide" if chart.wide else ""
        figures.append(
            f'<figure class="chart{wide}" data-section="{_e(section)}">'
            f"<figcaption>{_e(chart.title)}</figcaption>{div}</figure>"
        )
    return '<div class="grid">' + "\n".join(figures) + "</div>"


def _rule_words(context: PageContext) -> str:
    """The flag rule in force, as a reader needs it to trust an arrow."""
    flags = context.flags
    beyond = f" by more than {flags.min_change * 100:g} points" if flags.min_change > 0 else ""
    if flags.rule is FlagRule.FDR:
        return (
            f"▲/▼ mark the changes{beyond} flagged under a false discovery rate of "
            f"q = {flags.q:g} over the wave: of all its arrows against one reference, at most "
            f"about {flags.q * 100:g}% are expected to be false (each change's P(flag wrong) "
            "is in the changes table); – is no flag"
        )
    return (
        f"▲/▼ mark each change{beyond} whose central {context.change_probability * 100:.0f}% "
        f"interval excludes it (P ≥ {(1 + context.change_probability) / 2:.3f}), judged one by "
        f"one: about {(1 - context.change_probability) * 100:.0f}% of unchanged estimates get "
        "an arrow every wave; – is no flag"
    )


def _grade_words(certainty: CertaintySettings) -> str:
    """The certainty grades and their thresholds on the interval's half-width."""
    marks = t.CERTAINTY_MARKS
    return (
        f"{marks['solid']} solid (± {certainty.solid * 100:g} points or less), "
        f"{marks['indicative']} indicative (± {certainty.indicative * 100:g} or less), "
        f"{marks['too_uncertain']} too uncertain (wider)"
    )


def _downloads(tables: ReportTables, context: PageContext) -> str:
    links = ['<li><a href="tables.xlsx">tables.xlsx</a>: every table below, one sheet each</li>']
    links += [
        f'<li><a href="{_e(name)}.csv">{_e(name)}.csv</a> ({len(frame):,} rows)</li>'
        for name, frame in tables.sheets().items()
    ]
    notes = [
        f"Estimates are MRP population shares with {context.interval * 100:.0f}% credible "
        "intervals; trend bands are 90% (5th to 95th percentile).",
        f"Flag rule: {_rule_words(context)}. Group vs rest and brand vs brand comparisons "
        "are flagged under the same rule, each over its own set of comparisons.",
        f"Certainty grades: {_grade_words(context.certainty)}."
        + (
            f" Numbers graded too uncertain are not shown ({t.TOO_UNCERTAIN})."
            if context.certainty.suppress
            else ""
        ),
        f"⚠ marks a base below {context.low_base} respondents: the estimate rests mostly on "
        "the model.",
    ]
    if context.labels_note:
        notes.append(context.labels_note)
    return (
        "<ul>"
        + "".join(links)
        + '</ul><ul class="notes">'
        + "".join(f"<li>{_e(n)}</li>" for n in notes)
        + "</ul>"
    )


_STYLE = """
:root { --ink: #1d2733; --muted: #6b7785; --line: #e3e8ee; --up: #1a7f37; --down: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial,
  sans-serif; color: var(--ink); background: #f6f8fa; }
header { background: #17324d; color: #fff; padding: 14px 28px 0; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0 0 12px; color: #c9d6e3; }
nav { display: flex; gap: 4px; flex-wrap: wrap; }
nav a { color: #fff; text-decoration: none; padding: 7px 12px; border-radius: 6px 6px 0 0;
  background: rgba(255,255,255,.08); }
nav a:hover { background: rgba(255,255,255,.2); }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 4px 20px 14px; margin: 14px 0; }
h2 { font-size: 18px; margin: 12px 0 8px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
p.lead { color: var(--muted); margin: 0 0 8px; }
p.empty { color: var(--muted); font-style: italic; }
table.headline, table.data { border-collapse: collapse; width: 100%;
  font-variant-numeric: tabular-nums; }
table.headline th, table.data th { text-align: left; font-weight: 600; color: var(--muted);
  border-bottom: 2px solid var(--line); padding: 4px 8px; white-space: nowrap; }
table.headline td, table.data td { border-bottom: 1px solid var(--line); padding: 3px 8px; }
table.headline tr.low td { background: #fff8e6; }
table.data td.num { text-align: right; } table.data tr.flagged td { background: #fdecea; }
.arrow.up { color: var(--up); } .arrow.down { color: var(--down); } .arrow.steady { color: #888; }
.muted { color: var(--muted); } .warn { color: var(--down); font-weight: 600; }
.lowbase { color: #9a6700; font-size: 12px; white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
figure.chart { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figure.chart.wide { grid-column: span 2; }
figure.chart.full { grid-column: 1 / -1; }
div.scroll { overflow-x: auto; }
figure.chart figcaption { font-weight: 600; margin: 0 0 2px 4px; }
ul.notes { color: var(--muted); }
"""


def render_page(tables: ReportTables, context: PageContext) -> str:
    """The whole page: header, one section per entry of ``SECTIONS``, plotly.js once.

    Parameters
    ----------
    tables
        The wave's report tables (``tables.py``); the charts are drawn from them.
    context
        The wave, its settings, and why a section has no data.

    Returns
    -------
    str
        A complete HTML document that needs no network: plotly.js is inlined in the head and
        every chart only calls it.
    """
    group = context.headline_group
    trends = trend_charts(
        tables.trends, group, low_base=context.low_base, milestones=tables.milestones
    )
    funnels = funnel_charts(tables.funnel, group)
    associations = association_charts(tables.associations)
    comparison = comparison_charts(tables.mrp_raw_raked)
    for_group = f"target group '{group}'"
    bodies = {
        "headline": _headline_section(tables, context),
        "trends": (
            f'<p class="lead">{_e(for_group)}, the last {context.trend_waves} waves at most; '
            "bands: 90% intervals; open points: low base"
            + ("; dotted lines: milestones" if not tables.milestones.empty else "")
            + ".</p>"
            + _milestones_list(tables.milestones)
            + charts_grid(trends, "trends")
            if trends
            else _milestones_list(tables.milestones)
            + _empty(context.trends_note or "No trend rows for this wave.")
        ),
        "funnel": (
            f'<p class="lead">{_e(for_group)}: population share at each stage, with its '
            "interval.</p>" + charts_grid(funnels, "funnel")
            if funnels
            else _empty(
                "No funnel in this wave: configure reporting.funnel (e.g. [aware, consider]) "
                "or ask a stage among the previous stage's yes."
            )
        ),
        "comparisons": _comparisons_section(tables, context),
        "associations": (
            f'<p class="lead">{_e(for_group)}: share associating each brand with each '
            "attribute, ± half its interval.</p>" + charts_grid(associations, "associations")
            if associations
            else _empty("No association questions (brand questions with options) in this wave.")
        ),
        "comparison": (
            '<p class="lead"><span style="color:' + PALETTE[0] + '">● MRP</span> with its '
            "interval beside the "
            + " and the ".join(
                f'<span style="color:{colour}">{_SYMBOLS[symbol]} {_e(name)}</span>'
                for name, _, symbol, colour in SAMPLE_SHARES
            )
            + " sample share (raked: weighted to the census margins), per target group; "
            "⚠: low base.</p>" + charts_grid(comparison, "comparison")
            if comparison
            else _empty("No estimates in this wave.")
        ),
        "audiences": _audiences_section(tables, context),
        "downloads": _downloads(tables, context),
    }
    smoothed = smoothed_section(tables.smoothed, group, context.change_probability)
    if smoothed is not None:
        bodies["smoothed"] = smoothed
    published = f"published {context.published_at}; " if context.published_at else ""
    return document(
        title=f"misterp report: wave {context.wave}",
        heading=f"Brand tracking report: wave {context.wave}",
        subtitle=f"{published}{context.health}; headline {for_group}",
        sections={key: (title, bodies[key]) for key, title in SECTIONS.items() if key in bodies},
    )


def document(
    *, title: str, heading: str, subtitle: str, sections: Mapping[str, tuple[str, str]]
) -> str:
    """The page skeleton: head with the style and plotly.js (once), header, nav, sections.

    ``title``, ``heading`` and ``subtitle`` are plain text (escaped here); ``sections`` maps
    each section id to its heading (plain text) and its body (HTML, escaped by the caller).
    """
    nav = "".join(f'<a href="#{_e(key)}">{_e(name)}</a>' for key, (name, _) in sections.items())
    body = "\n".join(
        f'<section id="{_e(key)}"><h2>{_e(name)}</h2>{html_body}</section>'
        for key, (name, html_body) in sections.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        f"<style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>{_e(heading)}</h1><p>{_e(subtitle)}</p>"
        f"<nav>{nav}</nav></header><main>{body}</main></body></html>\n"
    )
