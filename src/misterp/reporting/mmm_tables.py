"""The media-mix report's tables: readable, rounded frames from a run's published tables.

Pure functions over the frames of ``OUTPUT/mmm/RUN/`` (``roas``, ``budget``, ``diagnostics``);
the page shows them as they are here and the CSVs beside it hold the same numbers. Spend and
contributions are in the input's units (one decimal), ROAS in KPI per unit of spend (two
decimals), MAPE in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = [
    "FLAG",
    "MMMReportTables",
    "budget_view",
    "diagnostics_view",
    "roas_headline",
    "roas_view",
]

#: The diagnostics table's column saying why a market is flagged ("" when it converged).
FLAG = "Flag"


@dataclass(frozen=True)
class MMMReportTables:
    """A run's report tables (readable) and the published frames the charts are drawn from."""

    roas: pd.DataFrame
    budget: pd.DataFrame | None
    diagnostics: pd.DataFrame
    contributions: pd.DataFrame = field(default_factory=pd.DataFrame)
    fitted: pd.DataFrame | None = None
    response_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The published ROAS table, which the ROAS chart draws.
    roas_raw: pd.DataFrame = field(default_factory=pd.DataFrame)

    def sheets(self) -> dict[str, pd.DataFrame]:
        """The tables written as CSV beside the page, by file stem."""
        sheets = {"roas": self.roas, "diagnostics": self.diagnostics}
        if self.budget is not None:
            sheets["budget"] = self.budget
        return sheets


def roas_view(roas: pd.DataFrame) -> pd.DataFrame:
    """One row per market and channel: spend, contribution, ROAS and marginal ROAS.

    >>> raw = pd.DataFrame({"market": ["DE"], "channel": ["tv"], "spend": [200.0],
    ...     "spend_share": [0.25], "contribution": [300.04], "contribution_lower": [250.0],
    ...     "contribution_upper": [350.0], "roas": [1.5002], "roas_lower": [1.25],
    ...     "roas_upper": [1.75], "marginal_roas": [0.5], "marginal_roas_lower": [0.25],
    ...     "marginal_roas_upper": [0.756], "status": ["converged"]})
    >>> [str(v) for v in roas_view(raw).iloc[0]][2:11]
    ['200.0', '25.0', '300.0', '1.5', '1.25', '1.75', '0.5', '0.25', '0.76']
    """
    return pd.DataFrame(
        {
            "Market": roas["market"],
            "Channel": roas["channel"],
            "Spend": roas["spend"].round(1),
            "Spend share %": (roas["spend_share"] * 100).round(1),
            "Contribution": roas["contribution"].round(1),
            "ROAS": roas["roas"].round(2),
            "ROAS lower": roas["roas_lower"].round(2),
            "ROAS upper": roas["roas_upper"].round(2),
            "Marginal ROAS": roas["marginal_roas"].round(2),
            "Marginal ROAS lower": roas["marginal_roas_lower"].round(2),
            "Marginal ROAS upper": roas["marginal_roas_upper"].round(2),
            "Status": roas["status"],
        }
    ).reset_index(drop=True)


def budget_view(budget: pd.DataFrame) -> pd.DataFrame:
    """One row per market and channel: spend now and advised over the window, and the gain.

    >>> raw = pd.DataFrame({"market": ["DE"], "channel": ["tv"], "weeks": [4],
    ...     "current_spend": [100.0], "recommended_spend": [150.0],
    ...     "current_contribution": [80.0], "recommended_contribution": [95.54],
    ...     "gain": [15.56], "gain_lower": [-2.0], "gain_upper": [30.0],
    ...     "status": ["converged"]})
    >>> [str(v) for v in budget_view(raw).iloc[0]]
    ['DE', 'tv', '4', '100.0', '150.0', '50.0', '80.0', '95.5', '15.6', '-2.0', '30.0', 'converged']
    """
    current = budget["current_spend"]
    change = (budget["recommended_spend"] / current.where(current != 0) - 1) * 100
    return pd.DataFrame(
        {
            "Market": budget["market"],
            "Channel": budget["channel"],
            "Weeks": budget["weeks"],
            "Current spend": current.round(1),
            "Recommended spend": budget["recommended_spend"].round(1),
            "Change %": change.round(1),
            "Current contribution": budget["current_contribution"].round(1),
            "Recommended contribution": budget["recommended_contribution"].round(1),
            "Gain": budget["gain"].round(1),
            "Gain lower": budget["gain_lower"].round(1),
            "Gain upper": budget["gain_upper"].round(1),
            "Status": budget["status"],
        }
    ).reset_index(drop=True)


def _flag(row: pd.Series) -> str:
    if row["status"] == "converged":
        return ""
    if row["status"] == "failed":
        return "failed: no draws"
    return "not converged: numbers are not trustworthy"


def diagnostics_view(diagnostics: pd.DataFrame) -> pd.DataFrame:
    """One row per market: convergence, attempts, fit quality and why it is flagged.

    >>> raw = pd.DataFrame({"market": ["DE", "FR"], "status": ["converged", "not_converged"],
    ...     "attempts": [1, 3], "r_hat_max": [1.0041, 1.2], "ess_bulk_min": [812.4, 20.0],
    ...     "ess_tail_min": [700.0, 15.0], "divergences": [0, 7], "r2": [0.9312, 0.5],
    ...     "mape": [0.0412, 0.2], "holdout_mape": [0.0634, None], "seconds": [61.2, 300.0]})
    >>> view = diagnostics_view(raw)
    >>> [str(v) for v in view.iloc[0]][:11]
    ['DE', 'converged', '1', '1.004', '812', '700', '0', '0.931', '4.1', '6.3', '61']
    >>> view["Flag"].tolist()
    ['', 'not converged: numbers are not trustworthy']
    """

    def percent(name: str) -> pd.Series:
        return (pd.to_numeric(diagnostics[name], errors="coerce") * 100).round(1)

    def number(name: str, digits: int) -> pd.Series:
        values = pd.to_numeric(diagnostics[name], errors="coerce").round(digits)
        return values.astype("Int64") if digits == 0 else values

    return pd.DataFrame(
        {
            "Market": diagnostics["market"],
            "Status": diagnostics["status"],
            "Attempts": diagnostics["attempts"],
            "R-hat max": number("r_hat_max", 3),
            "ESS bulk min": number("ess_bulk_min", 0),
            "ESS tail min": number("ess_tail_min", 0),
            "Divergences": number("divergences", 0),
            "R²": number("r2", 3),
            "MAPE %": percent("mape"),
            "Holdout MAPE %": percent("holdout_mape"),
            "Seconds": number("seconds", 0),
            FLAG: diagnostics.apply(_flag, axis=1) if len(diagnostics) else [],
        }
    ).reset_index(drop=True)


def roas_headline(roas: pd.DataFrame, diagnostics: pd.DataFrame) -> list[dict[str, str]]:
    """One short row per market: its status and each channel's ROAS with its interval, best first.

    For the orchestrator's UI, beside the link to the page. ``roas`` is the published table,
    ``diagnostics`` the :func:`diagnostics_view` (one row per market, failed ones too).

    >>> roas = pd.DataFrame({"market": ["DE", "DE"], "channel": ["tv", "search"],
    ...     "roas": [1.5, 2.25], "roas_lower": [1.25, 2.0], "roas_upper": [1.75, 2.5]})
    >>> diagnostics = pd.DataFrame({"Market": ["DE", "FR"], "Status": ["converged", "failed"],
    ...     "Flag": ["", "failed: no draws"]})
    >>> [row["roas"] for row in roas_headline(roas, diagnostics)]
    ['search 2.25 (2.00-2.50) · tv 1.50 (1.25-1.75)', '']
    >>> roas_headline(roas, diagnostics)[1]["flag"]
    'failed: no draws'
    """
    rows = []
    for market, status, flag in zip(
        diagnostics["Market"], diagnostics["Status"], diagnostics[FLAG], strict=True
    ):
        channels = roas[roas["market"] == market].sort_values("roas", ascending=False)
        rows.append(
            {
                "market": str(market),
                "status": str(status),
                "roas": " · ".join(
                    f"{row.channel} {row.roas:.2f} ({row.roas_lower:.2f}-{row.roas_upper:.2f})"
                    for row in channels.itertuples(index=False)
                ),
                "flag": str(flag),
            }
        )
    return rows
