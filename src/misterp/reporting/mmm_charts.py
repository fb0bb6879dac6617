"""The media-mix report's charts, in the tracker report's theme (``charts.theme``).

Every chart draws its interval (a band or error bars). Markets and channels are untrusted text
and escaped for plotly's HTML-like labels (``charts.label``). Input frames are the run's
published tables (``contributions``, ``fitted``, ``roas``, ``response_curves``).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from misterp.reporting.charts import PALETTE, Chart, colours, label, rgba, theme

__all__ = ["BASELINE_COLOUR", "contribution_charts", "response_charts", "roas_charts"]

#: The baseline (everything but media) is drawn grey under the channels.
BASELINE_COLOUR = "#B8C2CC"
BASELINE = "baseline"


def _channel_colours(frame: pd.DataFrame) -> dict[object, str]:
    """One colour per channel across every market (the baseline is grey)."""
    return colours(c for c in frame["channel"] if c != BASELINE) if len(frame) else {}


def _band(
    x: list[object], lower: pd.Series, upper: pd.Series, colour: str, name: str
) -> go.Scatter:
    return go.Scatter(
        x=x + x[::-1],
        y=upper.tolist() + lower.tolist()[::-1],
        mode="lines",
        fill="toself",
        fillcolor=rgba(colour, 0.18),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=name,
    )


def contribution_charts(contributions: pd.DataFrame, fitted: pd.DataFrame | None) -> list[Chart]:
    """Per market: weekly contributions stacked (baseline first), the total with its band.

    ``fitted`` (optional: runs before it was published lack it) adds the posterior of the total
    as a line with its interval and the actual KPI as dots.
    """
    charts: list[Chart] = []
    if contributions.empty:
        return charts
    palette = _channel_colours(contributions)
    for market, rows in contributions.groupby("market", sort=False):
        figure = go.Figure()
        channels = list(dict.fromkeys(rows["channel"]))
        order = [BASELINE] * (BASELINE in channels) + [c for c in channels if c != BASELINE]
        for channel in order:
            part = rows[rows["channel"] == channel].sort_values("date")
            colour = BASELINE_COLOUR if channel == BASELINE else palette[channel]
            figure.add_trace(
                go.Scatter(
                    x=part["date"],
                    y=part["mean"],
                    name=label(channel),
                    mode="lines",
                    stackgroup="contributions",
                    line={"width": 0.5, "color": colour},
                    fillcolor=rgba(colour, 0.75),
                    hovertemplate=f"{label(channel)}: %{{y:,.0f}}<extra></extra>",
                )
            )
        if fitted is not None and not fitted.empty:
            total = fitted[fitted["market"] == market].sort_values("date")
            if not total.empty:
                x = total["date"].tolist()
                figure.add_trace(_band(x, total["lower"], total["upper"], PALETTE[7], "total"))
                figure.add_trace(
                    go.Scatter(
                        x=x,
                        y=total["mean"],
                        name="model total (band: interval)",
                        legendgroup="total",
                        mode="lines",
                        line={"color": PALETTE[7], "width": 1.5},
                        hovertemplate="total: %{y:,.0f}<extra></extra>",
                    )
                )
                figure.add_trace(
                    go.Scatter(
                        x=x,
                        y=total["kpi"],
                        name="KPI",
                        mode="markers",
                        marker={"color": PALETTE[5], "size": 4},
                        hovertemplate="KPI: %{y:,.0f}<extra></extra>",
                    )
                )
        figure.update_yaxes(rangemode="tozero", title_text="KPI per week")
        charts.append(Chart(f"{market}: weekly contributions", theme(figure, 360), full=True))
    return charts


def roas_charts(roas: pd.DataFrame) -> list[Chart]:
    """Per market: ROAS and marginal ROAS per channel, a dot with its interval as error bar."""
    charts: list[Chart] = []
    if roas.empty:
        return charts
    palette = _channel_colours(roas)
    for market, rows in roas.groupby("market", sort=False):
        figure = make_subplots(
            rows=1,
            cols=2,
            shared_yaxes=True,
            subplot_titles=["ROAS", "marginal ROAS"],
            horizontal_spacing=0.06,
        )
        y = [label(c) for c in rows["channel"]]
        point_colours = [palette[c] for c in rows["channel"]]
        for column, name in ((1, "roas"), (2, "marginal_roas")):
            figure.add_trace(
                go.Scatter(
                    x=rows[name],
                    y=y,
                    mode="markers",
                    marker={"color": point_colours, "size": 10},
                    error_x={
                        "type": "data",
                        "array": (rows[f"{name}_upper"] - rows[name]).tolist(),
                        "arrayminus": (rows[name] - rows[f"{name}_lower"]).tolist(),
                        "color": "#444",
                    },
                    customdata=list(zip(rows[f"{name}_lower"], rows[f"{name}_upper"], strict=True)),
                    hovertemplate="%{y}: %{x:.2f} (%{customdata[0]:.2f} to %{customdata[1]:.2f})"
                    "<extra></extra>",
                    showlegend=False,
                ),
                row=1,
                col=column,
            )
        figure.update_xaxes(rangemode="tozero")
        figure.update_yaxes(autorange="reversed")
        themed = theme(figure, 90 + 40 * len(rows))
        charts.append(Chart(f"{market}: ROAS per channel (KPI per unit of spend)", themed))
    return charts


def response_charts(curves: pd.DataFrame) -> list[Chart]:
    """Per market: each channel's total contribution against its spend, band, current spend.

    ``curves`` is ``response_curves.parquet`` (spend and contribution over the fitted weeks at
    multiples of the actual spend); the actual spend (factor 1) is marked with a diamond.
    """
    charts: list[Chart] = []
    if curves.empty:
        return charts
    palette = _channel_colours(curves)
    for market, rows in curves.groupby("market", sort=False):
        figure = go.Figure()
        for channel, curve in rows.groupby("channel", sort=False):
            curve = curve.sort_values("spend")
            colour = palette[channel]
            name = label(channel)
            x = curve["spend"].tolist()
            figure.add_trace(_band(x, curve["lower"], curve["upper"], colour, name))
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=curve["mean"],
                    name=name,
                    legendgroup=name,
                    mode="lines",
                    line={"color": colour, "width": 2},
                    hovertemplate=f"{name}: spend %{{x:,.0f}} → %{{y:,.0f}}<extra></extra>",
                )
            )
            now = curve.iloc[(curve["spend_factor"] - 1.0).abs().argsort()[:1]]
            figure.add_trace(
                go.Scatter(
                    x=now["spend"],
                    y=now["mean"],
                    mode="markers",
                    marker={
                        "symbol": "diamond",
                        "size": 11,
                        "color": colour,
                        "line": {"color": "#222", "width": 1},
                    },
                    legendgroup=name,
                    showlegend=False,
                    hovertemplate=f"{name}: current spend %{{x:,.0f}} → %{{y:,.0f}}<extra></extra>",
                )
            )
        figure.update_xaxes(title_text="spend over the fitted weeks", rangemode="tozero")
        figure.update_yaxes(title_text="contribution", rangemode="tozero")
        charts.append(Chart(f"{market}: response curves", theme(figure, 340)))
    return charts
