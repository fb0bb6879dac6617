"""The report's charts: plotly figures drawn from the report's tables, in one theme.

Every chart draws an interval (a band or error bars) and marks low bases, as the tables do.
Ids, brands, groups and labels are untrusted text: plotly renders a subset of HTML in titles,
legends, ticks and hover labels, so every such string is escaped here (plotly shows the
entities as the plain characters).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from misterp.mrp.data import ALL_MARKETS
from misterp.mrp.published import question_family
from misterp.reporting import tables as t
from misterp.reporting.milestones import DATE, MARKET, MILESTONE, milestone_position

__all__ = [
    "PALETTE",
    "SAMPLE_SHARES",
    "Chart",
    "association_charts",
    "colours",
    "comparison_charts",
    "funnel_charts",
    "label",
    "rgba",
    "theme",
    "trend_charts",
]

#: One palette for every chart (colour-blind safe: Okabe-Ito), in the order lines are drawn.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


@dataclass(frozen=True)
class Chart:
    """One figure of the page and the title it is shown under (plain text, not escaped)."""

    title: str
    figure: go.Figure
    #: Drawn across two columns of the page's grid (a chart with many panels).
    wide: bool = False
    #: Drawn across the whole row of the page's grid (a long time series).
    full: bool = False


def _e(text: object) -> str:
    """Escape untrusted text for plotly's HTML-like labels."""
    return html.escape(str(text), quote=False)


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _theme(figure: go.Figure, height: int) -> go.Figure:
    """The one theme: white, quiet grid, legend on top, percent axes from 0."""
    figure.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": _FONT, "size": 12, "color": "#222"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        hoverlabel={"font": {"family": _FONT}},
    )
    return figure


def _colours(names: Iterable[object]) -> dict[object, str]:
    """One colour per brand (or option) across every chart of a section, in sorted order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names), key=str))}


# Public names of the theme and its helpers, for the other reports' charts (the MMM report).
label = _e
rgba = _rgba
theme = _theme
colours = _colours


def _in_group(frame: pd.DataFrame, group: str) -> pd.DataFrame:
    return frame[frame[t.GROUP] == group]


def _trend_key(question: str, brand: str, option: str) -> tuple[str, str]:
    """Which chart a trend line goes on, and its name there.

    A brand's question shares a chart with the other brands' same question (their family),
    one line per brand; any other question gets a chart of its own, one line per option.
    """
    family = question_family(question, brand or None)
    if family is None:
        return question, option
    return (family if option == "yes" else f"{family} · {option}"), brand


def _draw_milestones(
    figure: go.Figure, market: str, milestones: pd.DataFrame | None, starts: Sequence[str]
) -> None:
    """A dotted vertical line and its label for each milestone of ``market`` (or of all)."""
    if milestones is None or milestones.empty:
        return
    mine = milestones[milestones[MARKET].isin([market, ALL_MARKETS])]
    for day, label in zip(mine[DATE], mine[MILESTONE], strict=True):
        position = milestone_position(str(day), starts)
        if position is None:
            continue
        figure.add_vline(x=position, line={"color": "#6b7785", "width": 1, "dash": "dot"})
        figure.add_annotation(
            x=position,
            y=1.0,
            yref="paper",
            text=_e(label),
            hovertext=_e(f"{day}: {label}"),
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 10, "color": "#6b7785"},
        )


def trend_charts(
    trends: pd.DataFrame,
    group: str,
    *,
    low_base: int = 50,
    milestones: pd.DataFrame | None = None,
) -> list[Chart]:
    """One chart per market x question family (or question): estimate lines with bands.

    ``trends`` is ``tables.trends_table``; only ``group`` is drawn. A point resting on fewer
    than ``low_base`` respondents is drawn open, with the base in its hover. ``milestones``
    (``milestones.milestones_table``) are drawn as labelled dotted lines on their market's
    charts, where their date falls within the charted waves.
    """
    rows = _in_group(trends, group)
    if rows.empty:
        return []
    keys = [
        _trend_key(q, b, o)
        for q, b, o in zip(rows[t.QUESTION], rows[t.BRAND], rows[t.OPTION], strict=True)
    ]
    # Yes/no KPIs (awareness, consideration) first, then questions with several options.
    rows = rows.assign(
        _chart=[k[0] for k in keys], _line=[k[1] for k in keys], _multi=rows[t.OPTION] != "yes"
    ).sort_values([t.MARKET, "_multi", "_chart"], kind="stable")
    ordered = rows.sort_values([t.PERIOD_START, t.WAVE]).drop_duplicates(t.WAVE)
    waves = ordered[t.WAVE].tolist()
    starts = ordered[t.PERIOD_START].astype(str).tolist()
    colours = _colours(rows["_line"])
    charts = []
    for (market, name), chart_rows in rows.groupby([t.MARKET, "_chart"], sort=False):
        figure = go.Figure()
        for line, points in chart_rows.groupby("_line", sort=False):
            points = points.set_index(t.WAVE).reindex(waves).dropna(subset=[t.ESTIMATE])
            colour = colours[line]
            x = [_e(w) for w in points.index]
            figure.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=points[t.Q95].tolist() + points[t.Q05].tolist()[::-1],
                    mode="lines",
                    fill="toself",
                    fillcolor=_rgba(colour, 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=_e(line),
                )
            )
            low = points[t.BASE_N].fillna(0).astype(int) < low_base
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=points[t.ESTIMATE],
                    mode="lines+markers",
                    name=_e(line),
                    legendgroup=_e(line),
                    line={"color": colour, "width": 2},
                    marker={
                        "color": ["white" if is_low else colour for is_low in low],
                        "line": {"color": colour, "width": 2},
                        "size": 8,
                    },
                    text=[
                        f"{_e(line)}: {e:.1f}% (90%: {lo:.1f}-{hi:.1f}), n = {n}"
                        + (" ⚠ low base" if is_low else "")
                        for e, lo, hi, n, is_low in zip(
                            points[t.ESTIMATE],
                            points[t.Q05],
                            points[t.Q95],
                            points[t.BASE_N],
                            low,
                            strict=True,
                        )
                    ],
                    hovertemplate="%{x}<br>%{text}<extra></extra>",
                )
            )
        # a little room left and right, so the first wave's label clears the 0% tick
        figure.update_xaxes(
            type="category",
            categoryorder="array",
            categoryarray=[_e(w) for w in waves],
            range=[-0.3, len(waves) - 0.7],
        )
        figure.update_yaxes(ticksuffix="%", rangemode="tozero")
        _draw_milestones(figure, str(market), milestones, starts)
        charts.append(Chart(f"{market}: {name}", _theme(figure, 270)))
    return charts


#: Brand panels per row of a market's funnel chart.
FUNNEL_PANELS_PER_ROW = 6


def funnel_charts(funnel: pd.DataFrame, group: str) -> list[Chart]:
    """One chart per market: a panel per brand, a bar per stage with its interval."""
    rows = _in_group(funnel, group)
    colours = _colours(rows[t.BRAND])
    charts = []
    for market, market_rows in rows.groupby(t.MARKET, sort=False):
        brands = list(dict.fromkeys(market_rows[t.BRAND]))
        # a trackers' market can have dozens of brands: wrap them into rows of a few panels
        columns = min(len(brands), FUNNEL_PANELS_PER_ROW)
        panel_rows = -(-len(brands) // columns)
        figure = make_subplots(
            rows=panel_rows,
            cols=columns,
            shared_yaxes=True,
            subplot_titles=[_e(b) for b in brands],
            horizontal_spacing=0.04,
            vertical_spacing=min(0.12, 0.5 / panel_rows),
        )
        for index, brand in enumerate(brands):
            row, column = divmod(index, columns)
            stages = market_rows[market_rows[t.BRAND] == brand].sort_values(t.STAGE)
            figure.add_trace(
                go.Bar(
                    x=[_e(s) for s in stages[t.STAGE_NAME]],
                    y=stages[t.SHARE],
                    error_y={
                        "type": "data",
                        "array": (stages[t.SHARE_UPPER] - stages[t.SHARE]).tolist(),
                        "arrayminus": (stages[t.SHARE] - stages[t.SHARE_LOWER]).tolist(),
                        "color": "#444",
                    },
                    marker={"color": colours[brand]},
                    text=[f"{v:.0f}%" for v in stages[t.SHARE]],
                    textposition="inside",
                    insidetextanchor="middle",
                    customdata=[
                        "" if pd.isna(c) else f"; {c:.1f}% of the previous stage"
                        for c in stages["Conversion %"]
                    ],
                    hovertemplate="%{x}: %{y:.1f}%%{customdata}<extra></extra>",
                    showlegend=False,
                ),
                row=row + 1,
                col=column + 1,
            )
        figure.update_yaxes(ticksuffix="%", rangemode="tozero")
        charts.append(
            Chart(
                f"{market}: funnel by brand",
                _theme(figure, 320 * panel_rows),
                wide=len(brands) > 2,
            )
        )
    return charts


def association_charts(associations: pd.DataFrame) -> list[Chart]:
    """One heatmap per market x association family: brands by options, estimate in the cell.

    A cell shows the estimate and its margin (half the interval); a low base is marked ⚠.
    Every heatmap shares one colour scale, so one colour is one share in every market.
    """
    charts = []
    low, high = associations[t.ESTIMATE].min(), associations[t.ESTIMATE].max()
    for (market, family), rows in associations.groupby([t.MARKET, t.FAMILY], sort=False):
        brands = list(dict.fromkeys(rows[t.BRAND]))
        options = list(dict.fromkeys(rows[t.OPTION]))
        cells = rows.set_index([t.BRAND, t.OPTION])
        z, text = [], []
        for brand in brands:
            z_row: list[float | None] = []
            text_row: list[str] = []
            for option in options:
                if (brand, option) not in cells.index:
                    z_row.append(None)
                    text_row.append("")
                    continue
                cell = cells.loc[(brand, option)]
                margin = (cell[t.UPPER] - cell[t.LOWER]) / 2
                z_row.append(float(cell[t.ESTIMATE]))
                text_row.append(
                    f"{cell[t.ESTIMATE]:.0f}% ±{margin:.0f}" + (" ⚠" if cell[t.BASE_FLAG] else "")
                )
            z.append(z_row)
            text.append(text_row)
        figure = go.Figure(
            go.Heatmap(
                z=z,
                x=[_e(o) for o in options],
                y=[_e(b) for b in brands],
                text=text,
                texttemplate="%{text}",
                colorscale="Blues",
                zmin=low,
                zmax=high,
                colorbar={"title": {"text": "%"}, "thickness": 12},
                hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
            )
        )
        figure.update_yaxes(autorange="reversed")
        charts.append(Chart(f"{market}: {family} by brand", _theme(figure, 120 + 40 * len(brands))))
    return charts


def _kpi_labels(rows: pd.DataFrame) -> list[str]:
    labels = rows[t.LABEL] if t.LABEL in rows else [None] * len(rows)
    return [
        _e(t.kpi_name(q, o, lab) + (" ⚠" if f else ""))
        for q, o, lab, f in zip(
            rows[t.QUESTION], rows[t.OPTION], labels, rows[t.BASE_FLAG], strict=True
        )
    ]


def comparison_charts(comparison: pd.DataFrame, groups: Iterable[str] | None = None) -> list[Chart]:
    """One chart per market x target group: MRP with its interval beside raw and raked shares."""
    rows = comparison
    if groups is not None:
        rows = rows[rows[t.GROUP].isin(list(groups))]
    charts = []
    for (market, group), chart_rows in rows.groupby([t.MARKET, t.GROUP], sort=False):
        y = _kpi_labels(chart_rows)
        figure = go.Figure()
        figure.add_trace(
            go.Scatter(
                x=chart_rows["MRP %"],
                y=y,
                mode="markers",
                name="MRP (interval)",
                marker={"color": PALETTE[0], "size": 10},
                error_x={
                    "type": "data",
                    "array": (chart_rows["MRP upper %"] - chart_rows["MRP %"]).tolist(),
                    "arrayminus": (chart_rows["MRP %"] - chart_rows["MRP lower %"]).tolist(),
                    "color": PALETTE[0],
                },
                hovertemplate="%{y}: MRP %{x:.1f}%<extra></extra>",
            )
        )
        for name, column, symbol, colour in SAMPLE_SHARES:
            figure.add_trace(
                go.Scatter(
                    x=chart_rows[column],
                    y=y,
                    mode="markers",
                    name=name,
                    marker={"color": colour, "symbol": symbol, "size": 9},
                    hovertemplate=f"%{{y}}: {name.lower()} %{{x:.1f}}%<extra></extra>",
                )
            )
        # one scale for every group, so the charts compare at a glance
        figure.update_xaxes(ticksuffix="%", range=[-3, 103], dtick=25)
        figure.update_yaxes(autorange="reversed")
        # Long tick labels leave the legend too little width; the page's lead says it instead.
        _theme(figure, 40 + 24 * len(chart_rows))
        figure.update_layout(showlegend=False, margin={"t": 10})
        charts.append(Chart(f"{market}: {group}", figure))
    return charts


#: The sample shares drawn beside MRP: legend name, column, marker symbol, colour.
SAMPLE_SHARES: Sequence[tuple[str, str, str, str]] = (
    ("raw", t.RAW, "x", PALETTE[5]),
    ("raked", t.RAKED, "diamond", PALETTE[2]),
)
