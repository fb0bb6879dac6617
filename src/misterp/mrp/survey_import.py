"""``misterp import``: a survey export and its mapping become a validated wave folder.

The mapping (:mod:`misterp.mrp.survey_mapping`) says which column is what; this module recodes
the export (:mod:`misterp.mrp.survey_source`) into the input contract (``respondents``,
``answers``, ``questions`` with labels, plus the census the mapping names), reporting every
problem of the export at once with its column, values and counts, and the fix. The wave is
then written to a temporary folder and validated there by the same
:func:`~misterp.mrp.prepare.prepare_wave` as ``misterp validate``; only a valid wave is copied
to the output, so nothing is written on any error. The recoding tables it returns are what
``--check`` prints, for an analyst to hold against the questionnaire.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd

from misterp.errors import ConfigError
from misterp.inputs import (
    InputValidationError,
    ValidationReport,
)
from misterp.mrp.config import WaveConfig, load_config
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.survey_mapping import (
    QuestionMapping,
    Recode,
    SurveyMapping,
    load_mapping,
    relative_to,
)
from misterp.mrp.survey_recode import (
    RecodeTable,
    SourceProblems,
    counted,
    multi_answers,
    recode_column,
    single_answers,
)
from misterp.mrp.survey_source import SurveySource, read_source
from misterp.storage import ResultStore

__all__ = [
    "ImportedWave",
    "SurveyImport",
    "build_wave",
    "import_survey",
]

logger = logging.getLogger(__name__)

#: Files ``misterp import`` writes or copies into a wave folder, by role.
IMPORT_ROLES = ("respondents", "answers", "questions", "poststrat", "census_tables")
#: Optional files the mapping may copy in too.
COPIED_ROLES = ("poststrat", "census_tables", "profile_margins")


@dataclass(frozen=True)
class ImportedWave:
    """The export in the input contract, and the tables that say how each value got there."""

    respondents: pd.DataFrame
    answers: pd.DataFrame
    questions: pd.DataFrame
    recodes: tuple[RecodeTable, ...]

    def check_text(self, source: str) -> str:
        """What ``--check`` prints: respondents per market, questions, recoding tables."""
        per_market = self.respondents.groupby("market").size()
        lines = [
            f"{source}: {len(self.respondents):,} respondents, {len(self.answers):,} answer rows",
            "respondents per market: "
            + ", ".join(f"{market} {n:,}" for market, n in per_market.items()),
            f"questions ({self.questions['question_id'].nunique()}):",
        ]
        n_options = self.answers.groupby("question_id")["option"].nunique().to_dict()
        for row in self.questions.drop_duplicates("question_id").to_dict("records"):
            n = int(n_options.get(row["question_id"], 0))
            label = f'  "{row["label"]}"' if _text(row["label"]) else ""
            lines.append(
                f"  {row['question_id']}: {row['kind']}, {n} option{'' if n == 1 else 's'}, "
                f"brand {_text(row['brand']) or '-'}, base {_text(row['base']) or 'everyone'}"
                f"{label}"
            )
        lines.append("recoding (source value -> result: respondents):")
        for table in self.recodes:
            lines.append(f"  {table.target} <- {table.column}")
            lines += [f"    {row.line()}" for row in table.rows]
        return "\n".join(lines)


def _text(value: object) -> str | None:
    """A text cell of a frame, None for a blank (pandas may hold it as NaN)."""
    return value if isinstance(value, str) and value else None


def _label(question: QuestionMapping, source: SurveySource) -> str | None:
    """The mapping's label, else the SPSS variable label (a multi-select's shared prefix)."""
    if question.label is not None:
        return question.label
    labels = [source.variable_labels.get(column) for column in question.columns]
    known = [label for label in labels if label]
    if len(known) <= 1:
        return known[0] if known else None
    prefix = known[0]
    for label in known[1:]:
        while not label.startswith(prefix):
            prefix = prefix[:-1]
    prefix = prefix.rstrip(" -:_/")
    return prefix or known[0]


def _mapped_columns(mapping: SurveyMapping) -> list[tuple[str, str]]:
    """Every source column the mapping reads, with where the mapping names it."""
    named = [(mapping.respondent_id, "respondent_id")]
    if isinstance(mapping.market, Recode):
        named.append((mapping.market.column, "market.column"))
    for section, recodes in (
        ("demographics", mapping.demographics),
        ("profiles", mapping.profiles),
    ):
        named += [(r.column, f"{section}.{name}.column") for name, r in recodes.items()]
    for i, question in enumerate(mapping.questions):
        named += [(column, f"questions[{i}] ('{question.id}')") for column in question.columns]
    return named


def build_wave(mapping: SurveyMapping, source: SurveySource, mapping_name: str) -> ImportedWave:
    """Recode an export into respondents, answers and questions; every problem at once.

    Raises
    ------
    InputValidationError
        Listing each mapped column missing from the file, values outside the mapping (with
        counts), multi-select columns that are not 0/1, blank or duplicate respondent ids.
    """
    problems = SourceProblems(source, mapping_name)
    absent = [(c, w) for c, w in _mapped_columns(mapping) if c not in source.frame.columns]
    for column, where in absent:
        problems.missing_column(column, where)
    if absent:  # recoding half an export would only add noise to the report
        raise InputValidationError(ValidationReport(problems.found))

    ids = source.frame[mapping.respondent_id]
    if ids.isna().any():
        problems.add(
            mapping.respondent_id,
            ids.index[ids.isna()],
            f"{int(ids.isna().sum())} respondents have no id",
            "give every row its respondent id, or drop the empty rows from the export",
        )
    doubled = ids.notna() & ids.duplicated(keep=False)
    if doubled.any():
        problems.add(
            mapping.respondent_id,
            ids.index[doubled],
            f"duplicate respondent ids: {counted(ids[doubled], source, mapping.respondent_id)}",
            "give each respondent one row (was a file appended twice, or a wave's rows "
            "exported twice?)",
        )

    respondents = pd.DataFrame({"respondent_id": ids.astype(object)})
    recodes: list[RecodeTable] = []
    if isinstance(mapping.market, Recode):
        respondents["market"], table = recode_column(
            "market", mapping.market, "market", source, problems
        )
        recodes.append(table)
    else:
        respondents["market"] = mapping.market
    for section, recode_map in (
        ("demographics", mapping.demographics),
        ("profiles", mapping.profiles),
    ):
        for name, recode in recode_map.items():
            respondents[name], table = recode_column(
                name, recode, f"{section}.{name}", source, problems
            )
            recodes.append(table)

    answers: list[pd.DataFrame] = []
    for question in mapping.questions:
        if question.column is not None:
            frame, table = single_answers(question, mapping, source, ids, problems)
            answers.append(frame)
            recodes.append(table)
        else:
            frames, tables = multi_answers(question, mapping, source, ids, problems)
            answers += frames
            recodes += tables
    if problems.found:
        raise InputValidationError(ValidationReport(problems.found))

    answer_frame = pd.concat(answers, ignore_index=True)
    answered = answer_frame.merge(respondents[["respondent_id", "market"]], on="respondent_id")
    markets = answered.groupby("question_id", sort=False)["market"].unique()
    rows = [
        {
            "question_id": question.id,
            "market": market,
            "brand": question.brand,
            "kind": question.question_kind,
            "base": question.base,
            "label": _label(question, source),
        }
        for question in mapping.questions
        for market in sorted(markets.get(question.id, []))
    ]
    questions = pd.DataFrame(
        rows, columns=["question_id", "market", "brand", "kind", "base", "label"]
    )
    return ImportedWave(respondents, answer_frame, questions, tuple(recodes))


@dataclass(frozen=True)
class SurveyImport:
    """What ``misterp import`` did: the wave, its validation, and where it went."""

    wave: str
    imported: ImportedWave
    prepared: PreparedWave
    config: WaveConfig
    #: The config as the mapping names it (relative to the mapping file), for the next command.
    config_uri: str
    #: The wave folder written (``OUTPUT/WAVE``); None for a dry run (``--check``).
    written: str | None

    @property
    def reads_written(self) -> bool:
        """Whether ``misterp run --config`` reads the folder written (its ``input`` is there)."""
        if self.written is None:
            return False
        return _same_place(self.config.input, self.written)


def _same_place(a: str, b: str) -> bool:
    """Two URIs of one folder (local paths compared resolved)."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _copy(uri: str, folder: Path, role: str, name: str) -> str:
    """Copy a file the mapping names into the wave folder as ``role`` + its ending (returned)."""
    ending = Path(uri).suffix.lower()
    if ending not in (".csv", ".parquet"):
        raise ConfigError(f"{name}: {uri} must be a .csv or .parquet file of the input contract")
    try:
        with fsspec.open(uri, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found: {uri}") from None
    (folder / f"{role}{ending}").write_bytes(data)
    return f"{role}{ending}"


def import_survey(
    mapping_uri: str,
    source_uri: str,
    wave: str,
    output_uri: str,
    *,
    check: bool = False,
    replace: bool = False,
    on_built: Callable[[ImportedWave, str], None] | None = None,
) -> SurveyImport:
    """Import a survey export as wave ``wave`` under ``output_uri``, validated, or nothing.

    The wave folder is built and validated (``prepare_wave``, as ``misterp validate`` does) in
    a temporary folder, and copied to ``OUTPUT/WAVE/`` only when valid and not ``check``.

    Parameters
    ----------
    mapping_uri, source_uri
        The mapping file and the export (``.sav``, ``.zsav``, ``.csv``, ``.xlsx``).
    wave
        The wave id: the folder's name, validated as the config validates it.
    output_uri
        The folder that gets the wave folder, e.g. the ``waves`` of a config's
        ``input: waves/{wave}``.
    check
        Dry run: build and validate, write nothing.
    replace
        Overwrite the wave's input files when ``OUTPUT/WAVE/`` already has some.
    on_built
        Called with the recoded wave before validation (``--check`` prints it even when the
        census then rejects it).

    Raises
    ------
    ConfigError
        The mapping or its config; a wave folder that already has input files.
    InputValidationError
        The export, or the imported wave as validation sees it.
    """
    mapping = load_mapping(mapping_uri)
    mapping_name = Path(mapping_uri).name
    config_uri = relative_to(mapping_uri, mapping.config)
    config = load_config(config_uri).resolved(wave=wave)
    _check_config(mapping, config, mapping_name, config_uri)
    store = ResultStore(output_uri, config.storage_options)
    existing = [p for p in store.list(wave) if Path(p).stem in (*IMPORT_ROLES, *COPIED_ROLES)]
    if existing and not replace and not check:
        raise ConfigError(
            f"{store.uri(wave)} already has input files ({', '.join(existing)}): refusing to "
            "overwrite them; pass --replace to import the wave again, or choose another --output"
        )
    source = read_source(source_uri, sheet=mapping.sheet, storage_options=config.storage_options)
    imported = build_wave(mapping, source, mapping_name)
    if on_built is not None:
        on_built(imported, source.name)
    with tempfile.TemporaryDirectory(prefix=f"misterp-import-{wave}-") as temporary:
        folder = Path(temporary)
        imported.respondents.to_csv(folder / "respondents.csv", index=False)
        imported.answers.to_csv(folder / "answers.csv", index=False)
        imported.questions.to_csv(folder / "questions.csv", index=False)
        origins = {f"{role}.csv": f"imported from {source.name}" for role in IMPORT_ROLES[:3]}
        for role in COPIED_ROLES:
            path = getattr(mapping.census, role)
            if path is not None:
                uri = relative_to(mapping_uri, path)
                origins[_copy(uri, folder, role, f"{mapping_name} census.{role}")] = (
                    f"copied from {path}"
                )
        try:
            # earlier waves (profile models pooled over waves) are where this one will land
            prepared = prepare_wave(
                config.resolved(wave=wave, input=str(folder)).with_earlier_inputs(
                    f"{output_uri.rstrip('/')}/{{wave}}"
                )
            )
        except InputValidationError as exc:  # name the files as the user knows them
            problems = [
                dataclasses.replace(p, file=f"{p.file} ({origins[p.file]})")
                if p.file in origins
                else p
                for p in exc.report
            ]
            raise InputValidationError(ValidationReport(problems)) from None
        if check:
            return SurveyImport(wave, imported, prepared, config, config_uri, None)
        for path in existing:  # a stale respondents.parquet beside a new respondents.csv
            store.remove(path)
        for file in sorted(folder.iterdir()):
            store.write_bytes(f"{wave}/{file.name}", file.read_bytes())
    logger.info("imported %s as wave %s in %s", source.name, wave, store.uri(wave))
    return SurveyImport(wave, imported, prepared, config, config_uri, store.uri(wave))


def _check_config(
    mapping: SurveyMapping, config: WaveConfig, mapping_name: str, config_uri: str
) -> None:
    """The mapping must give exactly the config's demographics and declare its profiles."""
    problems = []
    demographics = set(config.demographics)
    mapped = set(mapping.demographics)
    if mapped != demographics:
        problems.append(
            f"demographics: the mapping gives {sorted(mapped)}, the config {config_uri} "
            f"declares {sorted(demographics)} -> map exactly the config's demographics"
        )
    unknown = sorted(set(mapping.profiles) - set(config.profiles))
    if unknown:
        problems.append(
            f"profiles {unknown} are not profiles of the config {config_uri} -> add them to "
            "its profiles, or drop them from the mapping"
        )
    if problems:
        raise ConfigError(
            f"{mapping_name}: does not fit its config\n" + "\n".join(f"  {p}" for p in problems)
        )
