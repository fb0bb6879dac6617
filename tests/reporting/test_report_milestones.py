"""Milestones on the trend charts: on their market's charts, where their date falls."""

from __future__ import annotations

import pandas as pd

from misterp.reporting import tables as t
from misterp.reporting.charts import trend_charts
from misterp.reporting.milestones import milestones_table


def _trends() -> pd.DataFrame:
    rows = []
    for market in ("DE", "FR"):
        for wave, start in (("2026-09", "2026-09-01"), ("2026-10", "2026-10-01")):
            rows.append(
                {
                    t.WAVE: wave,
                    t.PERIOD_START: start,
                    t.MARKET: market,
                    t.BRAND: "b1",
                    t.QUESTION: "aware_b1",
                    t.OPTION: "yes",
                    t.GROUP: "all",
                    t.ESTIMATE: 40.0,
                    t.Q05: 35.0,
                    t.Q95: 45.0,
                    t.BASE_N: 300,
                    t.STATUS: "converged",
                }
            )
    return pd.DataFrame(rows)


def test_a_milestone_is_drawn_on_its_markets_charts_at_its_date() -> None:
    milestones = milestones_table(
        pd.DataFrame(
            {
                "date": ["2026-09-16", "2026-10-01", "2026-12-01", "2026-10-16"],
                "market": ["DE", "all", "DE", "FR"],
                "label": ["Price cut", "TV <b>starts</b>", "Too late", "FR only"],
            }
        )
    )

    charts = {c.title: c.figure for c in trend_charts(_trends(), "all", milestones=milestones)}

    de, fr = charts["DE: aware"], charts["FR: aware"]
    # wave i spans i - 0.5 .. i + 0.5: Sept 16 is the middle of wave 0, Oct 1 the start of wave 1
    assert sorted(shape.x0 for shape in de.layout.shapes) == [0.0, 0.5]
    assert [a.text for a in de.layout.annotations] == ["Price cut", "TV &lt;b&gt;starts&lt;/b&gt;"]
    assert sorted(shape.x0 for shape in fr.layout.shapes) == [0.5, 1.0]  # "all" and its own
    assert "Too late" not in {a.text for a in de.layout.annotations}  # after the charted waves
