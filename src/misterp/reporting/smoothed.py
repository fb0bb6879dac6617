"""The report's smoothed trend: its table (beside the raw change) and its page section.

Only a wave published with ``tracking.smoothing.enabled`` has ``smoothed.parquet``; without
it the table is empty, the sheet is left out of the exports and the page has no section. The
raw wave-on-wave change stays in every row beside the smoothed one, so a reader sees both and
never only the smoothed reading.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd

from misterp.reporting import tables as t

__all__ = ["SMOOTHED_TABLE_COLUMNS", "smoothed_section", "smoothed_table"]

SMOOTHED = "Smoothed %"
SMOOTHED_LOWER = "Smoothed lower %"
SMOOTHED_UPPER = "Smoothed upper %"
SMOOTHED_CHANGE = "Smoothed change pts"
SMOOTHED_P_UP = "Smoothed P(up)"
SMOOTHED_P_DOWN = "Smoothed P(down)"
SMOOTHED_FLAG = "Smoothed flag"
WAVES_SMOOTHED = "Waves smoothed"
DRIFT_SD = "Drift sd pts"
RAW_FLAG = "Raw change flag"

#: Columns after the estimate's identity (market, brand, question, label, option, group).
SMOOTHED_TABLE_COLUMNS: tuple[str, ...] = (
    t.ESTIMATE,
    t.CHANGE,
    RAW_FLAG,
    SMOOTHED,
    SMOOTHED_LOWER,
    SMOOTHED_UPPER,
    SMOOTHED_CHANGE,
    SMOOTHED_P_UP,
    SMOOTHED_P_DOWN,
    SMOOTHED_FLAG,
    WAVES_SMOOTHED,
    DRIFT_SD,
)

_KEY = ["market", "question_id", "option", "target_group"]


def smoothed_table(
    smoothed: pd.DataFrame | None,
    changes: pd.DataFrame | None,
    wave: str,
    *,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every estimate's smoothed level and change in ``wave``, beside its raw change.

    The raw change is the ``previous`` row of ``changes.parquet`` (empty where there is none).

    Examples
    --------
    >>> smoothed = pd.DataFrame({"wave": "2026-11", "level_wave": ["2026-10", "2026-11"],
    ...     "market": "DE", "question_id": "aware_b1", "option": "yes", "brand": "b1",
    ...     "target_group": "all", "raw_mean": [0.40, 0.46], "level": [0.41, 0.44],
    ...     "level_lower": [0.39, 0.42], "level_upper": [0.43, 0.46], "change": [None, 0.03],
    ...     "p_up": [None, 0.9], "p_down": [None, 0.1], "flag": [None, "steady"],
    ...     "waves_used": 2, "drift_sd": 0.01})
    >>> row = smoothed_table(smoothed, None, "2026-11").iloc[0]
    >>> float(row["Estimate %"]), float(row["Smoothed %"]), row["Smoothed flag"]
    (46.0, 44.0, 'steady')
    >>> row["Raw change flag"]  # no previous wave's change given
    ''
    """
    columns = [t.MARKET, t.BRAND, t.QUESTION, t.OPTION, t.GROUP, *SMOOTHED_TABLE_COLUMNS]
    if smoothed is None or smoothed.empty:
        return pd.DataFrame(columns=columns)
    rows = smoothed[smoothed["level_wave"] == wave]
    values = ["mean", "flag"]
    if changes is None or changes.empty:
        previous = pd.DataFrame(columns=_KEY + values)
    else:
        previous = changes.loc[changes["reference"] == "previous", _KEY + values]
    merged = rows.merge(
        previous.rename(columns={"mean": "raw_change", "flag": "raw_flag"}), on=_KEY, how="left"
    )
    out = t.identity(merged, labels)
    out[t.ESTIMATE] = _percent(merged["raw_mean"])
    out[t.CHANGE] = _percent(merged["raw_change"])
    out[RAW_FLAG] = merged["raw_flag"].astype(object).where(merged["raw_flag"].notna(), "")
    out[SMOOTHED] = _percent(merged["level"])
    out[SMOOTHED_LOWER] = _percent(merged["level_lower"])
    out[SMOOTHED_UPPER] = _percent(merged["level_upper"])
    out[SMOOTHED_CHANGE] = _percent(merged["change"])
    out[SMOOTHED_P_UP] = pd.Series(merged["p_up"], dtype=float).round(3)
    out[SMOOTHED_P_DOWN] = pd.Series(merged["p_down"], dtype=float).round(3)
    out[SMOOTHED_FLAG] = merged["flag"].astype(object).where(merged["flag"].notna(), "")
    out[WAVES_SMOOTHED] = merged["waves_used"].astype("Int64")
    out[DRIFT_SD] = (pd.Series(merged["drift_sd"], dtype=float) * 100).round(2)
    return out.reset_index(drop=True)


def _percent(values: pd.Series) -> pd.Series:
    """Shares as percent (changes as points) to one decimal, as every report table rounds."""
    return (pd.Series(values, dtype=float) * 100).round(1)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object, suffix: str = "", *, signed: bool = False) -> str:
    number = float(str(value)) if value is not None and value is not pd.NA else np.nan
    return "" if np.isnan(number) else f"{number:{'+' if signed else ''}.1f}{suffix}"


def _probability(value: object) -> str:
    number = float(str(value)) if value is not None and value is not pd.NA else np.nan
    return "" if np.isnan(number) else f"{number:.3f}"


def _arrow(flag: object, change: object) -> str:
    flag = str(flag) if isinstance(flag, str) else ""
    arrow = t.ARROWS.get(flag, "")
    text = _e(_number(change, " pts", signed=True))
    return f'<span class="arrow {_e(flag)}">{_e(arrow)}</span> {text}' if arrow else text


def smoothed_section(table: pd.DataFrame, group: str, change_probability: float) -> str | None:
    """The page's section for ``group`` (None: the wave has no smoothed trend)."""
    rows = table[table[t.GROUP] == group] if not table.empty else table
    if rows.empty:
        return None
    drift = float(rows[DRIFT_SD].iloc[0])
    waves = int(rows[WAVES_SMOOTHED].max())
    threshold = (1 + change_probability) / 2
    parts = [
        f"<p class=\"lead\">Target group '{_e(group)}': each estimate smoothed over its last "
        f"{waves} waves by a local-level model (a random walk whose drift, learnt across all "
        f"the wave's estimates, is {drift:.2f} pts a wave), beside the raw change from the "
        f"previous wave. Smoothed flags use the same P ≥ {threshold:.3f}; measured on "
        "simulated waves they rarely fire (few false alarms, little power at that rule): read "
        "the smoothed change as a second opinion on the raw one, not a replacement.</p>"
    ]
    heads = ["Brand", "Question", "Option", "Estimate", "Raw change", "Smoothed"]
    heads += ["Smoothed change", "Smoothed P(up)", "Smoothed P(down)"]
    for market, block in rows.groupby(t.MARKET, sort=False):
        body = []
        for _, row in block.iterrows():
            cells = [
                _e(row[t.BRAND]),
                _e(row[t.QUESTION]),
                _e(row[t.OPTION]),
                _e(_number(row[t.ESTIMATE], "%")),
                _arrow(row[RAW_FLAG], row[t.CHANGE]),
                f'<b>{_e(_number(row[SMOOTHED], "%"))}</b> <span class="muted">'
                f"{_e(_number(row[SMOOTHED_LOWER]))}-{_e(_number(row[SMOOTHED_UPPER]))}</span>",
                _arrow(row[SMOOTHED_FLAG], row[SMOOTHED_CHANGE]),
                _e(_probability(row[SMOOTHED_P_UP])),
                _e(_probability(row[SMOOTHED_P_DOWN])),
            ]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(
            f'<h3>{_e(market)}</h3><table class="data" data-market="{_e(market)}">'
            "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
        )
    return "\n".join(parts)
