"""Read one wave's input files and validate them, reporting every problem at once.

A wave folder (local path or any fsspec URL, e.g. ``s3://bucket/wave-07``) holds
``respondents``, ``answers``, the census and optionally ``questions`` (and the optional
``profile_margins`` and ``milestones``), each as ``.csv`` or ``.parquet``. The census is
either ``poststrat`` (the joint) or ``census_tables`` (margins and cross-tables, built into
the joint by :mod:`misterp.mrp.census` once they are valid).
Per-file rules are the pandera schemas of :mod:`misterp.mrp.schemas`, read and validated
lazily by :mod:`misterp.inputs` (shared with the media-mix models); cross-file rules are coded
here. Users fix their export once instead of re-running the
pipeline for each error, so :func:`read_wave` raises one :class:`InputValidationError` that lists
every problem with its file, column, rows and fix. Nothing is ever written.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from misterp.inputs import (
    InputTable,
    InputValidationError,
    ValidationProblem,
    ValidationReport,
    case_clashes,
    format_rows,
    join_distinct,
    load_table,
    open_folder,
    quote_values,
    schema_problems,
)
from misterp.mrp.census import BuiltCensus, build_census, census_table_problems
from misterp.mrp.config import CensusConfig
from misterp.mrp.data import (
    ALL_MARKETS,
    CENSUS_TABLES,
    MILESTONES,
    PROFILE_MARGINS,
    WAVE_FILES,
    WaveData,
)
from misterp.mrp.schemas import (
    answers_schema,
    census_tables_schema,
    milestones_schema,
    parse_base,
    poststrat_schema,
    profile_margins_schema,
    questions_schema,
    respondents_schema,
)
from misterp.storage import as_store_unavailable

# The report, its problems and the error are misterp.inputs', shared with the media-mix models;
# they stay importable from here, where the tracker's callers have always found them.
__all__ = [
    "NUMERIC_COLUMNS",
    "InputValidationError",
    "ValidationProblem",
    "ValidationReport",
    "format_rows",
    "read_earlier_respondents",
    "read_wave",
]

logger = logging.getLogger(__name__)

#: Columns kept as numbers when read from parquet (everything else is read as text).
NUMERIC_COLUMNS = frozenset({"selected", "population", "share"})


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """(market, question_id) pairs as ``'q1' in DE, 'q2' in FR``."""
    return join_distinct(f"'{question}' in {market}" for market, question in pairs)


def _answered(respondents: InputTable | None, answers: InputTable | None) -> pd.DataFrame | None:
    """Answers (index kept) with the respondent's market; None when that cannot be known.

    A duplicated respondent id joins every market it appears in, so the duplicate is reported
    once, not again as answers of the wrong market.
    """
    columns = ["respondent_id", "question_id", "option"]
    if respondents is None or answers is None:
        return None
    if not (respondents.has("respondent_id", "market") and answers.has(*columns)):
        return None
    markets = respondents.frame[["respondent_id", "market"]].dropna().drop_duplicates()
    joined = answers.frame[columns].reset_index().merge(markets, on="respondent_id")
    return joined.set_index("index").dropna(subset=["question_id", "option"])


def _unknown_respondents(respondents: InputTable, answers: InputTable) -> list[ValidationProblem]:
    """Answers whose respondent is not in the respondents file."""
    if not (respondents.has("respondent_id") and answers.has("respondent_id")):
        return []
    ids = answers.frame["respondent_id"]
    unknown = ids.notna() & ~ids.isin(set(respondents.frame["respondent_id"].dropna()))
    if not unknown.any():
        return []
    message = f"answers of respondents not in {respondents.name}: {quote_values(ids[unknown])}"
    fix = f"add these respondents to {respondents.name}, or drop their answers"
    return [answers.problem("respondent_id", ids.index[unknown], message, fix)]


def _census_coverage(
    respondents: InputTable, poststrat: InputTable, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """Every surveyed market and demographic level must exist in that market's census table."""
    if not (respondents.has("market") and poststrat.has("market")):
        return []
    problems = []
    surveyed, census = respondents.frame["market"], poststrat.frame["market"]
    census_markets = sorted(set(census.dropna()))
    for market in dict.fromkeys(surveyed[surveyed.notna() & ~surveyed.isin(census_markets)]):
        message = (
            f"market '{market}' has no rows in {poststrat.name} "
            f"(its markets: {join_distinct(census_markets)})"
        )
        fix = (
            f"add the census cells of market {market} to {poststrat.name}, or drop its respondents"
        )
        problems.append(
            respondents.problem("market", surveyed.index[surveyed.eq(market)], message, fix)
        )
    for name in demographics:
        if not (respondents.has(name) and poststrat.has(name)):
            continue
        for market in sorted(set(surveyed.dropna()) & set(census_markets)):
            levels = sorted(set(poststrat.frame.loc[census.eq(market), name].dropna()))
            level = respondents.frame[name]
            bad = surveyed.eq(market) & level.notna() & ~level.isin(levels)
            if bad.any():
                one = level[bad].nunique() == 1
                message = (
                    f"value{'' if one else 's'} {quote_values(level[bad])} "
                    f"{'is not a level' if one else 'are not levels'} of the census "
                    f"for market {market} (levels: {join_distinct(levels)})"
                )
                fix = f"recode to the census levels, or add the level to {poststrat.name}"
                problems.append(respondents.problem(name, level.index[bad], message, fix))
    return problems + _zero_population(respondents, poststrat, demographics)


def _zero_population(
    respondents: InputTable, poststrat: InputTable, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """Census levels with no population that respondents fall into, per market.

    A zero census cell is a fact (nobody lives there) and weights nothing; but respondents in a
    level whose every cell is zero, or in a market whose census is all zeros, cannot be
    poststratified or raked to anything: the census contradicts the sample. Reported on the
    census rows, with the market, the level and how many respondents it concerns.
    """
    if not (respondents.has("market") and poststrat.has("market", "population")):
        return []
    census = poststrat.frame
    population = pd.to_numeric(census["population"], errors="coerce")
    surveyed = respondents.frame["market"]
    problems = []
    for market in sorted(set(surveyed.dropna()) & set(census["market"].dropna())):
        in_market = census["market"].eq(market)
        if population[in_market].isna().any():
            continue  # the schema already reports missing or non-numeric counts
        if population[in_market].sum() <= 0:
            message = f"market {market}: population is 0 in every cell, so nothing can be weighted"
            fix = (
                f"give the census counts of market {market} in {poststrat.name}, "
                f"or drop its respondents from {respondents.name}"
            )
            problems.append(poststrat.problem("population", census.index[in_market], message, fix))
            continue
        people = respondents.frame.loc[surveyed.eq(market)]
        for name in demographics:
            if not (respondents.has(name) and poststrat.has(name)):
                continue
            totals = population[in_market].groupby(census.loc[in_market, name]).sum()
            for level in totals.index[totals.le(0)]:
                n_people = int(people[name].eq(level).sum())
                if n_people == 0:
                    continue
                rows = census.index[in_market & census[name].eq(level)]
                message = (
                    f"market {market}: {name} '{level}' has population 0 in every cell, "
                    f"but {n_people} respondent{'' if n_people == 1 else 's'} in "
                    f"{respondents.name} {'falls' if n_people == 1 else 'fall'} into it"
                )
                fix = (
                    f"give the census population of {name} '{level}' in market {market}, "
                    f"or recode those respondents in {respondents.name}"
                )
                problems.append(poststrat.problem("population", rows, message, fix))
    return problems


def _profile_problems(respondents: InputTable, profiles: Sequence[str]) -> list[ValidationProblem]:
    """A profile must tell people apart in every market, spelt one way across markets.

    A profile with one level in a market cannot define an audience there; a level that is only
    in some markets and looks like another market's level (``Yes`` in FR, ``yes`` in DE) is a
    typo that would split one audience in two.
    """
    if not respondents.has("market"):
        return []
    problems = []
    market = respondents.frame["market"]
    for name in profiles:
        if not respondents.has(name):
            continue
        values = respondents.frame[name]
        answered = values.notna() & market.notna()
        by_market = {
            str(m): sorted(set(values[answered & market.eq(m)].astype(str)))
            for m in sorted(set(market[answered]))
        }
        for m, levels in by_market.items():
            if len(levels) < 2:
                rows = values.index[market.eq(m)]
                message = (
                    f"profile '{name}' has {'one level' if levels else 'no answers'} "
                    f"{quote_values(levels)} in market {m}: an audience needs two or more"
                ).replace("  ", " ")
                fix = f"check the export of '{name}' for market {m}, or remove it from profiles"
                problems.append(respondents.problem(name, rows, message, fix))
        everywhere = set.intersection(*map(set, by_market.values())) if by_market else set()
        for m, levels in by_market.items():
            others = sorted({lv for o, lvs in by_market.items() if o != m for lv in lvs})
            for level in sorted(set(levels) - everywhere):
                if level in others:
                    continue
                close = [o for o in others if o.casefold() == level.casefold()] or (
                    difflib.get_close_matches(level, others, n=1, cutoff=0.85)
                )
                if close:
                    rows = values.index[market.eq(m) & values.eq(level)]
                    message = (
                        f"level '{level}' of profile '{name}' in market {m} looks like "
                        f"'{close[0]}' of the other markets"
                    )
                    fix = f"spell each level of '{name}' one way in every market"
                    problems.append(respondents.problem(name, rows, message, fix))
        problems += case_clashes(
            respondents, name, within=("market",), what=f"levels of profile '{name}'"
        )
    return problems


#: Known shares of one profile in one market may miss 1 by this much (rounded percentages).
MARGIN_TOLERANCE = 0.005


def _margin_problems(
    margins: InputTable, respondents: InputTable | None, profiles: Sequence[str]
) -> list[ValidationProblem]:
    """Known profile shares: a declared profile, a surveyed market, answered levels, sum 1.

    Checked per market and profile; a level left out keeps its modelled share.
    """
    frame = margins.frame
    problems = []
    if not profiles:
        message = "known profile shares given, but the config declares no profiles"
        fix = "declare the profiles under profiles in the config, or remove the file"
        return [ValidationProblem(margins.name, None, [], message, fix)]
    unknown = frame["profile"].notna() & ~frame["profile"].isin(profiles)
    if unknown.any():
        message = (
            f"{quote_values(frame.loc[unknown, 'profile'])} not among the profiles "
            f"{join_distinct(profiles)}"
        )
        fix = "name a profile of the config, or add it to profiles"
        problems.append(margins.problem("profile", frame.index[unknown], message, fix))
    if respondents is not None and respondents.has("market"):
        people = respondents.frame
        surveyed = set(people["market"].dropna())
        for (market, profile), rows in frame[~unknown].groupby(["market", "profile"], sort=True):
            if market not in surveyed:
                message = f"market '{market}' has no respondents"
                fix = f"remove its rows, or add its respondents to {respondents.name}"
                problems.append(margins.problem("market", rows.index, message, fix))
                continue
            if respondents.has(str(profile)):
                answered = set(people.loc[people["market"].eq(str(market)), str(profile)].dropna())
                strange = rows["level"].notna() & ~rows["level"].isin(answered)
                if strange.any():
                    message = (
                        f"{quote_values(rows.loc[strange, 'level'])} not a level of profile "
                        f"'{profile}' in market {market} "
                        f"(answered: {join_distinct(sorted(answered))})"
                    )
                    fix = f"use the levels of {respondents.name}, or recode them there"
                    problems.append(margins.problem("level", rows.index[strange], message, fix))
            total = pd.to_numeric(rows["share"], errors="coerce").sum()
            if abs(total - 1.0) > MARGIN_TOLERANCE:
                message = (
                    f"the shares of profile '{profile}' in market {market} sum to {total:.4f}, "
                    "not 1"
                )
                fix = (
                    "give every level's share of the population (a level left out, e.g. "
                    "missing, keeps its modelled share; the listed ones sum to 1)"
                )
                problems.append(margins.problem("share", rows.index, message, fix))
    return problems


def _base_problem(
    base: str, question: str, market: str, options: dict[tuple[str, str], list[str]]
) -> str | None:
    """Why a well-formed base cannot filter ``question`` in ``market``, if it cannot."""
    parsed = parse_base(base)
    if parsed is None:  # malformed: reported by the schema
        return None
    base_question, base_option = parsed
    shown = options.get((market, base_question))
    if shown is None:
        return f"base '{base}': question '{base_question}' has no answers in market {market}"
    if base_option not in shown:
        return (
            f"base '{base}': question '{base_question}' never shows option '{base_option}' "
            f"in market {market} (options: {join_distinct(shown)})"
        )
    if base_question == question:
        return f"base '{base}' names the question itself"
    return None


def _question_keys(frame: pd.DataFrame) -> pd.Series:
    """(market, question_id) of each row, index kept."""
    pairs = zip(frame["market"], frame["question_id"], strict=True)
    return pd.Series(list(pairs), index=frame.index, dtype=object)


def _question_problems(
    questions: InputTable, answers: InputTable, answered: pd.DataFrame
) -> list[ValidationProblem]:
    """The questions file must match the answers: coverage both ways, bases, single kinds."""
    if not questions.has("question_id", "market"):
        return []
    options: dict[tuple[str, str], list[str]] = {
        (str(market), str(question)): sorted(set(group))
        for (market, question), group in answered.groupby(["market", "question_id"])["option"]
    }
    listed = questions.frame.dropna(subset=["question_id", "market"])
    keys = _question_keys(listed)
    problems = []
    unanswered = keys[[key not in options for key in keys]]
    if len(unanswered):
        message = f"no answers in its market for {_pairs(unanswered)}"
        fix = f"drop the row, or fix its question_id / market to match {answers.name}"
        problems.append(questions.problem("question_id", unanswered.index, message, fix))
    listed_keys, answered_keys = set(keys), _question_keys(answered)
    unlisted = answered_keys[[key not in listed_keys for key in answered_keys]]
    if len(unlisted):
        message = f"answered but not listed in {questions.name}: {_pairs(unlisted)}"
        fix = f"add a row (question_id, market, brand, kind, base) to {questions.name}"
        problems.append(answers.problem("question_id", unlisted.index, message, fix))
    for i, row in listed.iterrows():
        question, market = row["question_id"], row["market"]
        wrong_base = None
        if row.get("base") is not None:
            wrong_base = _base_problem(row["base"], question, market, options)
        if wrong_base is not None:
            fix = "name an existing question=option of the same market, or leave it empty"
            problems.append(questions.problem("base", [i], wrong_base, fix))
        shown = options.get((market, question), [])
        if row.get("kind") == "single" and len(shown) > 1:
            message = (
                f"question '{question}' is single but shows {len(shown)} options "
                f"in market {market}: {join_distinct(shown)}"
            )
            fix = "set kind to multi, or keep one option (e.g. yes) per single question"
            problems.append(questions.problem("kind", [i], message, fix))
    return problems


def _milestone_problems(
    milestones: InputTable, respondents: InputTable | None
) -> list[ValidationProblem]:
    """A milestone's market must be surveyed in this wave, or ``all``."""
    if respondents is None or not respondents.has("market") or not milestones.has("market"):
        return []
    surveyed = sorted(set(respondents.frame["market"].dropna().astype(str)))
    markets = milestones.frame["market"].astype(str)
    unknown = milestones.frame["market"].notna() & ~markets.isin([*surveyed, ALL_MARKETS])
    if not unknown.any():
        return []
    message = (
        f"{quote_values(markets[unknown])} not a market of this wave "
        f"(markets: {join_distinct(surveyed)})"
    )
    fix = (
        f"name a market of {respondents.name}, or {ALL_MARKETS} for a milestone of every "
        "market; remove rows of markets not surveyed"
    )
    return [milestones.problem("market", milestones.frame.index[unknown], message, fix)]


def _cross_file_problems(
    tables: dict[str, InputTable | None], answered: pd.DataFrame | None, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """Rules that relate files, each run only when the files and columns it needs are there."""
    respondents, answers = tables["respondents"], tables["answers"]
    poststrat, questions = tables["poststrat"], tables["questions"]
    census_tables = tables[CENSUS_TABLES]
    problems = []
    if respondents is not None and answers is not None:
        problems += _unknown_respondents(respondents, answers)
    if census_tables is not None:
        problems += census_table_problems(census_tables, demographics)
    # coverage and zero populations read the tables as they read the joint: a level is in a
    # market's census when a row has it, and a level's population sums over the rows with it
    census = poststrat if poststrat is not None else census_tables
    if respondents is not None and census is not None:
        problems += _census_coverage(respondents, census, demographics)
    if questions is not None and answers is not None and answered is not None:
        problems += _question_problems(questions, answers, answered)
    # ids are path segments of the results: markets, then question ids per market, then options
    if respondents is not None:
        problems += case_clashes(respondents, "market", what="markets")
    if answers is not None and answered is not None:
        problems += case_clashes(
            answers, "question_id", within=("market",), what="question ids", frame=answered
        )
        problems += case_clashes(
            answers, "option", within=("market", "question_id"), what="options", frame=answered
        )
    return problems


def _questions_frame(questions: InputTable | None, answered: pd.DataFrame) -> pd.DataFrame:
    """The questions file cleaned, or defaults derived from the answers when it is absent."""
    columns = ["question_id", "market", "brand", "kind", "base", "label"]
    if questions is None:
        n_options = answered.groupby(["market", "question_id"])["option"].nunique().reset_index()
        frame = n_options[["question_id", "market"]].astype(str)
        frame["brand"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        frame["kind"] = n_options["option"].gt(1).map({True: "multi", False: "single"}).astype(str)
        frame["base"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        frame["label"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        return frame[columns]
    source = questions.frame.reset_index(drop=True)
    frame = source[["question_id", "market"]].astype(str)
    frame["brand"] = source["brand"].astype(object)
    frame["kind"] = source["kind"].astype(str)
    bases = [None if b is None else "=".join(parse_base(b) or ()) for b in source["base"]]
    frame["base"] = pd.Series(bases, index=frame.index, dtype=object)
    labels = source["label"] if "label" in source.columns else [None] * len(frame)
    frame["label"] = pd.Series(list(labels), index=frame.index, dtype=object)
    return frame[columns]


def _census_files(fs: Any, root: str, problems: list[ValidationProblem]) -> tuple[str, ...]:
    """The census roles to read: ``poststrat`` or ``census_tables``; a problem unless one."""
    folder = fs.unstrip_protocol(root).removeprefix("file://")
    with as_store_unavailable(folder, "looking for the census", any_os_error=False):
        present = [
            role
            for role in ("poststrat", CENSUS_TABLES)
            if any(fs.exists(f"{root}/{role}.{ext}") for ext in ("csv", "parquet"))
        ]
    if len(present) == 2:
        problems.append(
            ValidationProblem(
                f"{CENSUS_TABLES}.{{csv,parquet}}",
                None,
                [],
                "both poststrat (the census joint) and census_tables (its margins) exist: "
                "the census must come one way",
                "keep poststrat if it is the full joint, or census_tables to build the joint "
                "from margins and cross-tables; remove the other",
            )
        )
        return ()
    if not present:
        problems.append(
            ValidationProblem(
                "poststrat.{csv,parquet}",
                None,
                [],
                f"missing file in {folder}: the census is neither there nor given as "
                f"{CENSUS_TABLES}.{{csv,parquet}}",
                "add poststrat (one row per market x demographic cell), or census_tables "
                "(margins and cross-tables: market, table, the demographics, population)",
            )
        )
        return ()
    return tuple(present)


def _census_joint(
    tables: dict[str, InputTable | None],
    respondents: pd.DataFrame,
    demographics: tuple[str, ...],
    settings: CensusConfig,
) -> tuple[pd.DataFrame, BuiltCensus | None]:
    """The validated census as the joint: ``poststrat`` itself, or built from the tables."""
    poststrat, census_tables = tables["poststrat"], tables[CENSUS_TABLES]
    if poststrat is not None:
        joint = poststrat.frame[["market", *demographics]].astype(str)
        joint["population"] = pd.to_numeric(poststrat.frame["population"]).astype("float64")
        return joint, None
    assert census_tables is not None
    frame = census_tables.frame[["market", "table", *demographics]].copy()
    frame["population"] = pd.to_numeric(census_tables.frame["population"]).astype("float64")
    built = build_census(
        frame,
        respondents,
        demographics,
        source=census_tables.name,
        seed=settings.seed,
        tolerance=settings.tolerance,
        max_iterations=settings.max_iterations,
    )
    return built.joint, built


def read_wave(
    input_uri: str,
    demographics: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    profiles: Sequence[str] = (),
    census: CensusConfig | None = None,
) -> WaveData:
    """Read and validate a wave folder; raise one error listing every problem found.

    Parameters
    ----------
    input_uri
        Local folder or fsspec URL (``s3://bucket/prefix``); only read, never written.
    demographics
        Demographic column names from the config; respondents and poststrat need exactly these.
    storage_options
        Passed to fsspec (credentials, endpoint, ...).
    profiles
        Respondent columns beyond the census (config ``profiles``); blank cells are None.
    census
        How a census given as ``census_tables`` is built into the joint (the config's
        ``census`` section; its defaults when None).

    Raises
    ------
    InputValidationError
        With ``.report`` listing every problem of every file.
    """
    demographics, profiles = tuple(demographics), tuple(profiles)
    schemas = {
        "respondents": respondents_schema(demographics, profiles),
        "answers": answers_schema(),
        "poststrat": poststrat_schema(demographics),
        "questions": questions_schema(),
        CENSUS_TABLES: census_tables_schema(demographics),
        PROFILE_MARGINS: profile_margins_schema(),
        MILESTONES: milestones_schema(),
    }
    fs, root = open_folder(input_uri, storage_options)
    problems: list[ValidationProblem] = []
    census_roles = _census_files(fs, root, problems)
    tables: dict[str, InputTable | None] = {"poststrat": None, CENSUS_TABLES: None}
    for role in (*WAVE_FILES, CENSUS_TABLES):
        if role in ("poststrat", CENSUS_TABLES) and role not in census_roles:
            continue
        tables[role] = table = load_table(
            fs,
            root,
            role,
            problems,
            optional=role == "questions",
            numeric_columns=NUMERIC_COLUMNS,
        )
        if table is not None:
            problems += schema_problems(table, schemas[role])
    tables[PROFILE_MARGINS] = margins = load_table(
        fs, root, PROFILE_MARGINS, problems, optional=True, numeric_columns=NUMERIC_COLUMNS
    )
    margin_problems = schema_problems(margins, schemas[PROFILE_MARGINS]) if margins else []
    tables[MILESTONES] = milestones = load_table(fs, root, MILESTONES, problems, optional=True)
    if milestones is not None:
        problems += schema_problems(milestones, schemas[MILESTONES])
        problems += _milestone_problems(milestones, tables["respondents"])
    answered = _answered(tables["respondents"], tables["answers"])
    problems += _cross_file_problems(tables, answered, demographics)
    if tables["respondents"] is not None and profiles:
        problems += _profile_problems(tables["respondents"], profiles)
    if margins is not None and not margin_problems:
        margin_problems = _margin_problems(margins, tables["respondents"], profiles)
    problems += margin_problems
    order = (*WAVE_FILES, CENSUS_TABLES, PROFILE_MARGINS, MILESTONES)
    problems.sort(key=lambda problem: order.index(problem.file.split(".")[0]))
    if problems:
        raise InputValidationError(ValidationReport(problems))

    respondents, answers = tables["respondents"], tables["answers"]
    assert respondents is not None
    assert answers is not None
    assert answered is not None
    answer_frame = answers.frame[["respondent_id", "question_id", "option"]].astype(str)
    answer_frame["selected"] = pd.to_numeric(answers.frame["selected"]).astype("int8")
    people = respondents.frame[["respondent_id", "market", *demographics]].astype(str)
    joint, built = _census_joint(tables, people, demographics, census or CensusConfig())
    _add_profiles(people, respondents, profiles)
    wave = WaveData(
        respondents=people,
        answers=answer_frame,
        poststrat=joint,
        questions=_questions_frame(tables["questions"], answered),
        demographics=demographics,
        profiles=profiles,
        census=built,
        profile_margins=None
        if margins is None or margins.frame.empty
        else margins.frame[["market", "profile", "level"]]
        .astype(str)
        .assign(share=pd.to_numeric(margins.frame["share"]).astype(float)),
        milestones=None
        if milestones is None or milestones.frame.empty
        else milestones.frame[["date", "market", "label"]]
        .astype(str)
        .apply(lambda column: column.str.strip())
        .sort_values(["date", "market", "label"], kind="stable")
        .reset_index(drop=True),
    )
    logger.info(
        "read wave %s: %d respondents, %d answer rows, %d markets",
        input_uri,
        len(wave.respondents),
        len(wave.answers),
        len(wave.markets),
    )
    return wave


def read_earlier_respondents(
    input_uri: str,
    demographics: Sequence[str],
    profiles: Sequence[str],
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame | None:
    """An earlier wave's respondents, for profile models pooled over waves; None if absent.

    Only ``respondents`` is read: a pooled profile model needs each respondent's market,
    demographics and profile levels, not their answers. It is validated as a wave's would be
    (schema, profiles with two levels spelt one way), and a problem names the earlier wave's
    folder, so it is never mistaken for one of this wave's files.

    Raises
    ------
    InputValidationError
        The earlier wave's respondents file is there but unusable.
    """
    demographics, profiles = tuple(demographics), tuple(profiles)
    fs, root = open_folder(input_uri, storage_options)
    problems: list[ValidationProblem] = []
    table = load_table(
        fs, root, "respondents", problems, optional=True, numeric_columns=NUMERIC_COLUMNS
    )
    if table is not None:
        problems += schema_problems(table, respondents_schema(demographics, profiles))
        problems += _profile_problems(table, profiles)
    if problems:
        folder = input_uri.rstrip("/")
        raise InputValidationError(
            ValidationReport(
                [
                    dataclasses.replace(
                        problem,
                        file=f"{folder}/{problem.file}",
                        fix=f"{problem.fix}, or lower profile_settings.pool_waves so that this "
                        "earlier wave is not pooled",
                    )
                    for problem in problems
                ]
            )
        )
    if table is None:
        return None
    people = table.frame[["market", *demographics]].astype(str)
    _add_profiles(people, table, profiles)
    return people


def _add_profiles(people: pd.DataFrame, respondents: InputTable, profiles: Sequence[str]) -> None:
    """Copy the profile columns into ``people`` as text.

    Blanks stay None, for ``profile_settings.missing`` to decide.
    """
    for name in profiles:
        column = respondents.frame[name]
        people[name] = column.where(column.isna(), column.astype(str)).astype(object)
