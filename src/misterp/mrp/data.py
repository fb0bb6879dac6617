"""The in-memory form of one wave's validated input files.

Everything downstream (planning, cell aggregation, raking, poststratification) reads these
frames, never the files, so validation happens exactly once at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from misterp.mrp.census import BuiltCensus

#: Files of a wave folder, by role; each ``.csv`` or ``.parquet`` (``questions`` is optional).
WAVE_FILES: tuple[str, ...] = ("respondents", "answers", "poststrat", "questions")
#: The census as tables of margins and cross-tables: a wave gives this or ``poststrat``.
CENSUS_TABLES = "census_tables"
#: Known population shares of profile levels (optional; only with ``profiles``).
PROFILE_MARGINS = "profile_margins"
#: Campaign milestones for the report's trend charts (optional): date, market or all, label.
MILESTONES = "milestones"
#: The market of a milestone that applies to every market.
ALL_MARKETS = "all"


@dataclass(frozen=True)
class WaveData:
    """A validated wave.

    Attributes
    ----------
    respondents
        ``respondent_id`` (str), ``market`` (str) and one categorical string column per demographic.
    answers
        Long format: ``respondent_id``, ``question_id``, ``option`` (str), ``selected`` (int8, 0/1).
    poststrat
        ``market``, the demographic columns, ``population`` (float, >= 0): the census joint
        distribution.
    questions
        ``question_id``, ``market``, ``brand``, ``kind`` (``single``/``multi``), ``base`` (str or
        None, e.g. ``"aware_brand03=yes"``). One row per question and market that has
        answers; filled with defaults (brand None, kind inferred from the number of options, no
        base) when the wave has no ``questions`` file.
    demographics
        The demographic column names, in config order.
    profiles
        Respondent columns beyond the census (config ``profiles``), as text; a blank answer is
        None until ``profile_settings.missing`` decides what it means.
    census
        How ``poststrat`` was built when the wave gave ``census_tables`` (its margins and
        cross-tables) instead of the joint; None when it gave ``poststrat``.
    """

    respondents: pd.DataFrame
    answers: pd.DataFrame
    poststrat: pd.DataFrame
    questions: pd.DataFrame
    demographics: tuple[str, ...]
    profiles: tuple[str, ...] = ()
    census: BuiltCensus | None = None
    #: ``market, profile, level, share``: known population shares of profile levels that the
    #: synthetic table is raked to; empty without a ``profile_margins`` file.
    profile_margins: pd.DataFrame | None = None
    #: ``date`` (text, YYYY-MM-DD), ``market`` (a market or ``all``), ``label``: the campaign
    #: milestones the report draws on its trend charts; None without a ``milestones`` file.
    milestones: pd.DataFrame | None = None

    @property
    def markets(self) -> list[str]:
        """Markets present in the survey, sorted."""
        return sorted(self.respondents["market"].unique().tolist())
