"""Charts that must hold up on a real tracker's size, not only on the demo's three brands."""

from __future__ import annotations

import pandas as pd

from misterp.reporting import tables as t
from misterp.reporting.charts import FUNNEL_PANELS_PER_ROW, funnel_charts


def _funnel(brands: int) -> pd.DataFrame:
    rows = []
    for b in range(brands):
        for stage, name, share in ((1, "aware", 60.0), (2, "consider", 30.0)):
            rows.append(
                {
                    t.MARKET: "DE",
                    t.BRAND: f"b{b:02d}",
                    t.GROUP: "all",
                    t.STAGE: stage,
                    t.STAGE_NAME: name,
                    t.SHARE: share,
                    t.SHARE_LOWER: share - 5,
                    t.SHARE_UPPER: share + 5,
                    "Conversion %": None if stage == 1 else 50.0,
                }
            )
    return pd.DataFrame(rows)


def _axis(letter: str, panel: int) -> str:
    return f"{letter}axis{panel if panel > 1 else ''}"


def test_a_market_with_many_brands_gets_its_funnel_panels_wrapped_into_rows() -> None:
    # 50 brands in one row is more than plotly can space (it refused: 'cols=50')
    (chart,) = funnel_charts(_funnel(13), "all")

    layout = chart.figure.layout
    x_domains = {tuple(layout[_axis("x", i)].domain) for i in range(1, 14)}
    y_domains = {tuple(layout[_axis("y", i)].domain) for i in range(1, 14)}
    assert len(x_domains) == FUNNEL_PANELS_PER_ROW
    assert len(y_domains) == 3  # 6 + 6 + 1
    assert len(chart.figure.data) == 13
    assert [a.text for a in layout.annotations] == [f"b{b:02d}" for b in range(13)]


def test_a_few_brands_stay_on_one_row() -> None:
    (chart,) = funnel_charts(_funnel(3), "all")

    y_domains = {tuple(chart.figure.layout[_axis("y", i)].domain) for i in range(1, 4)}
    assert len(y_domains) == 1
