"""What to fit: one ``ModelSpec`` per market x question x answer option.

A spec is pure data (hashable, serialisable) so that it can travel to another process or pod,
name a Prefect task run, key the result store, and tell a re-run what has already been fitted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import formulae
import pandas as pd

from misterp.mrp.config import ModelConfig
from misterp.mrp.data import WaveData
from misterp.mrp.schemas import parse_base

__all__ = [
    "JOINT_ITEM",
    "PROFILE_QUESTION_PREFIX",
    "RESPONSE",
    "FormulaError",
    "ModelSpec",
    "base_of",
    "default_formula",
    "formula_columns",
    "joint_formula",
    "plan_model_specs",
]

#: The response every misterp formula models: successes ``yes`` out of ``n`` trials per cell.
RESPONSE = "p(yes, n)"


#: The column of a joint model's long frame that names the item (option, or question and option)
#: of each row; "option" is a reserved input column, so no demographic can be called so.
JOINT_ITEM = "option"

#: Question id of a profile's model: ``profile.category_user``; no input question may use it.
PROFILE_QUESTION_PREFIX = "profile."

#: Spec fields that label a model without changing it (left out of ``spec_hash``).
_LABELS = frozenset({"brand", "label"})


class FormulaError(ValueError):
    """A formula that cannot be fitted on the wave's demographic cells."""


@dataclass(frozen=True)
class ModelSpec:
    """One binomial multilevel model: P(option selected | demographic cell) in one market.

    ``base_question``/``base_option`` name the filter question for conditional questions
    (asked only to those who selected that option); estimates are then for the base population.
    """

    market: str
    question_id: str
    option: str
    formula: str
    brand: str | None = None
    base_question: str | None = None
    base_option: str | None = None
    #: How people read the question (``questions.csv`` column ``label``); reports show it.
    label: str | None = None
    #: The joint model this option is an item of (``model.joint_questions`` or
    #: ``model.joint_families``): the family's specs of a market are fitted as one model,
    #: and ``formula`` is then the joint formula over the items. None: fitted on its own.
    joint: str | None = None
    #: The profile variable this model describes (P(level | census cell), the ``option``), for
    #: an audience beyond the census; None for a question's model.
    profile: str | None = None

    @property
    def key(self) -> str:
        """One identity per model: result paths, task-run names and the manifest use it."""
        return f"{self.market}/{self.question_id}/{self.option}"

    @property
    def base_key(self) -> str | None:
        """Key of the model whose posterior gives P(base | cell), if conditional."""
        if self.base_question is None:
            return None
        return f"{self.market}/{self.base_question}/{self.base_option}"

    @property
    def spec_hash(self) -> str:
        """Content hash of everything that defines the model (for caching and provenance).

        The brand and the label name things, they are not part of the model: renaming them
        must not force a refit.
        """
        payload = {
            k: v
            for k, v in asdict(self).items()
            # fields added later are left out when unset, so older hashes stay unchanged
            if k not in _LABELS and not (k in ("joint", "profile") and v is None)
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, str | None]:
        """Plain mapping for JSON (manifest) and Prefect parameters."""
        return asdict(self)


def base_of(base: object) -> tuple[str, str] | None:
    """``(question_id, option)`` of a validated base, or None when asked to everyone."""
    if base is None or (isinstance(base, float) and pd.isna(base)) or str(base).strip() == "":
        return None
    parsed = parse_base(str(base))
    if parsed is None:  # validation rejects malformed bases; this is a programming error
        raise ValueError(f"base '{base}' is not of the form question_id=option")
    return parsed


def default_formula(
    demographics: Sequence[str],
    levels: dict[str, list[str]],
    interactions: Sequence[tuple[str, str]] = (),
) -> str:
    """Binary demographics as common effects, the rest as group intercepts, then interactions.

    A group effect on a two-level factor has one degree of freedom for its sd, which is what
    makes Bambi's defaults diverge; a common effect with a Normal(0, 1) prior does not. Each
    pair in ``interactions`` becomes a group effect over its level pairs, ``(1|a:b)``, shrunk
    towards no interaction by its sd.

    >>> levels = {"gender": ["f", "m"], "age": ["18-34", "35-54", "55+"]}
    >>> default_formula(["gender", "age"], levels, [("age", "gender")])
    'p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)'
    """
    terms = ["1"]
    for column in demographics:
        if len(levels.get(column, [])) <= 2:
            terms.append(column)
        else:
            terms.append(f"(1|{column})")
    terms += [f"(1|{first}:{second})" for first, second in interactions]
    return f"{RESPONSE} ~ " + " + ".join(terms)


def _top_level_terms(rhs: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in rhs:
        depth += char == "("
        depth -= char == ")"
        if char == "+" and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


def joint_formula(formula: str, item: str = JOINT_ITEM) -> str:
    """The formula of a joint model over the items of a family, from a one-item formula.

    Every term of ``formula`` stays as the effect the items share, and gets a deviation per
    item as a group effect crossed with ``item``: the Intercept ``(1|item)``, a common effect
    ``x`` or a group intercept ``(1|x)`` the term ``(1|x:item)``. Each deviation is shrunk
    towards the shared effect by its own sd (the interaction prior), so an item with a small
    base borrows the battery's demographic profile and a well-measured item keeps its own.

    >>> joint_formula("p(yes, n) ~ gender + (1|age)")
    'p(yes, n) ~ 1 + gender + (1|age) + (1|option) + (1|gender:option) + (1|age:option)'

    Raises
    ------
    FormulaError
        For a term without an item counterpart: no intercept (``0``, ``-1``), or a group
        slope ``(x|g)``.
    """
    left, sep, rhs = formula.partition("~")
    if not sep:
        raise FormulaError(f"formula '{formula}' has no '~'")
    terms = _top_level_terms(rhs)
    deviations: list[str] = []
    for term in terms:
        if term == "1":
            deviations.append(f"(1|{item})")
        elif term.startswith("(") and term.endswith(")"):
            expr, bar, factor = term[1:-1].partition("|")
            if not bar or expr.strip() != "1":
                raise FormulaError(
                    f"a joint model cannot take the term '{term}' of '{formula}': it takes the "
                    "intercept, common effects and group intercepts (1|x)"
                )
            deviations.append(f"(1|{factor.strip()}:{item})")
        elif term in {"0", "-1"}:
            raise FormulaError(
                f"a joint model needs an intercept; '{formula}' removes it with '{term}'"
            )
        else:
            deviations.append(f"(1|{term}:{item})")
    if "1" not in terms:
        terms.insert(0, "1")
        deviations.insert(0, f"(1|{item})")
    return f"{left.strip()} ~ " + " + ".join(terms + deviations)


def formula_columns(formula: str) -> set[str]:
    """The data columns a formula's right-hand side uses."""
    try:
        description = formulae.model_description(formula)
    except Exception as exc:  # formulae raises several types for malformed input
        raise FormulaError(f"cannot parse formula '{formula}': {exc}") from None
    response = description.response
    if response is None or set(response.var_names) != {"yes", "n"}:
        raise FormulaError(
            f"formula '{formula}' must model the binomial cell response: '{RESPONSE} ~ ...'"
        )
    return set(description.var_names) - {"yes", "n"}


def check_formula(formula: str, demographics: Sequence[str], where: str) -> None:
    """Raise if a formula names a column that is not a configured demographic."""
    unknown = sorted(formula_columns(formula) - set(demographics))
    if unknown:
        import difflib

        hints = []
        for column in unknown:
            close = difflib.get_close_matches(column, list(demographics), n=1)
            hints.append(f"'{column}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise FormulaError(
            f"{where}: formula '{formula}' names unknown column(s) {', '.join(hints)}; "
            f"formulas may use the demographics {list(demographics)}"
        )


def with_profile_terms(
    formula: str, profiles: Sequence[str], levels: Mapping[str, Sequence[str]]
) -> str:
    """``formula`` with each profile as an effect, as :func:`default_formula` adds a demographic.

    >>> with_profile_terms("p(yes, n) ~ 1 + (1|age)", ["user"], {"user": ["no", "yes"]})
    'p(yes, n) ~ 1 + (1|age) + user'
    """
    terms = [
        name if len(levels.get(name, [])) <= 2 else f"(1|{name})"
        for name in profiles
        if name not in formula_columns(formula)
    ]
    return " + ".join([formula, *terms])


def profile_specs(wave: WaveData, profiles: Sequence[str], formula: str) -> list[ModelSpec]:
    """The models of each profile per market: P(level | census cell), on the census terms only.

    Two levels need one binomial model (of the second level in sorted order; the first is its
    complement); more levels get one model per level, normalised per draw and cell into
    P(level | cell) (:func:`misterp.mrp.profiles.profile_weights`).
    """
    specs = []
    for market in wave.markets:
        people = wave.respondents.loc[wave.respondents["market"] == market]
        for name in profiles:
            levels = sorted(people[name].dropna().astype(str).unique().tolist())
            modelled = levels[1:] if len(levels) == 2 else levels
            specs += [
                ModelSpec(
                    market=market,
                    question_id=f"{PROFILE_QUESTION_PREFIX}{name}",
                    option=level,
                    formula=formula,
                    label=f"{name}: {level}",
                    profile=name,
                )
                for level in modelled
            ]
    return specs


def plan_model_specs(
    wave: WaveData,
    model: ModelConfig,
    profiles: Sequence[str] = (),
    *,
    profile_predictor: bool = True,
) -> list[ModelSpec]:
    """One spec per market x question x option that has answers, base questions first.

    With ``profiles`` (the profile variables audiences use), each market also gets the models of
    each profile (:func:`profile_specs`), first of all, and the question models get the
    profiles as effects unless ``profile_predictor`` is off.

    Raises
    ------
    FormulaError
        If the default or an override formula names an unknown column, or an override names a
        question that the wave does not have.
    """
    levels = {
        column: sorted(wave.poststrat[column].astype(str).unique().tolist())
        for column in wave.demographics
    }
    levels |= {
        name: sorted(wave.respondents[name].dropna().astype(str).unique().tolist())
        for name in profiles
    }
    interactions = model.interactions_for(wave.demographics)
    census_formula = model.formula or default_formula(wave.demographics, levels, interactions)
    check_formula(census_formula, wave.demographics, "model.formula")
    base_formula = (
        with_profile_terms(census_formula, profiles, levels)
        if profiles and profile_predictor
        else census_formula
    )
    clash = sorted(
        q
        for q in wave.answers["question_id"].unique()
        if str(q).startswith(PROFILE_QUESTION_PREFIX)
    )
    if profiles and clash:
        raise FormulaError(
            f"question ids {clash} start with '{PROFILE_QUESTION_PREFIX}', which names the "
            "models of profile variables; rename those questions"
        )
    known_questions = set(wave.answers["question_id"].unique())
    for question_id, formula in model.formulas.items():
        if question_id not in known_questions:
            raise FormulaError(
                f"model.formulas names question '{question_id}', which has no answers in this "
                f"wave; known questions: {', '.join(sorted(known_questions))}"
            )
        check_formula(formula, wave.demographics, f"model.formulas.{question_id}")

    answered = wave.answers.merge(wave.respondents[["respondent_id", "market"]], on="respondent_id")
    options = (
        answered[["market", "question_id", "option"]]
        .drop_duplicates()
        .sort_values(["market", "question_id", "option"])
    )
    questions: dict[tuple[str, str], dict[Any, Any]] = {
        (str(q["market"]), str(q["question_id"])): q for q in wave.questions.to_dict("records")
    }
    specs: list[ModelSpec] = []
    for row in options.itertuples(index=False):
        market, question_id, option = str(row.market), str(row.question_id), str(row.option)
        meta = questions.get((market, question_id))
        base = base_of(meta["base"]) if meta is not None else None
        brand = meta["brand"] if meta is not None else None
        label = meta.get("label") if meta is not None else None
        specs.append(
            ModelSpec(
                market=market,
                question_id=question_id,
                option=option,
                formula=with_profile_terms(model.formulas[question_id], profiles, levels)
                if question_id in model.formulas and profiles and profile_predictor
                else model.formulas.get(question_id, base_formula),
                brand=None if brand is None or pd.isna(brand) else str(brand),
                base_question=base[0] if base else None,
                base_option=base[1] if base else None,
                label=None if label is None or pd.isna(label) else str(label),
            )
        )
    specs = _with_joint_families(specs, model, questions, known_questions)
    # Unconditional models first: a conditional question's poststratification needs them.
    specs = sorted(specs, key=lambda s: (s.base_question is not None, s.key))
    # Profile models before all: every estimate of their market is weighted by them.
    return profile_specs(wave, profiles, census_formula) + specs


def _with_joint_families(
    specs: list[ModelSpec],
    model: ModelConfig,
    questions: Mapping[tuple[str, str], Mapping[Any, Any]],
    known_questions: set[str],
) -> list[ModelSpec]:
    """Mark the specs of each joint family and give them the family's joint formula.

    A family of one item in a market (a battery with a single option answered there) stays an
    ordinary model: there is nothing to share.
    """
    family_of: dict[str, str] = {}
    for name, members in model.joint_families.items():
        if name in known_questions:
            raise FormulaError(
                f"model.joint_families.{name}: the name is a question id of this wave; give "
                "the family a name of its own (e.g. associations)"
            )
        unknown = sorted(set(members) - known_questions)
        if unknown:
            raise FormulaError(
                f"model.joint_families.{name} names question(s) {unknown} with no answers in "
                f"this wave; known questions: {', '.join(sorted(known_questions))}"
            )
        family_of |= dict.fromkeys(members, name)
    grouped: dict[tuple[str, str], list[int]] = {}
    for index, spec in enumerate(specs):
        family = family_of.get(spec.question_id)
        meta = questions.get((spec.market, spec.question_id)) or {}
        if family is None and model.joint_questions == "multi" and meta.get("kind") == "multi":
            family = spec.question_id
        if family is not None:
            grouped.setdefault((spec.market, family), []).append(index)
    planned = list(specs)
    for (market, family), indexes in grouped.items():
        if len(indexes) < 2:
            continue
        formulas = {specs[i].formula for i in indexes}
        if len(formulas) > 1:
            named = sorted({specs[i].question_id for i in indexes})
            raise FormulaError(
                f"joint family '{family}' in market {market} mixes formulas "
                f"({' / '.join(sorted(formulas))}) of its questions {named}; a joint model "
                "has one formula: give them the same model.formulas entry, or none"
            )
        formula = joint_formula(formulas.pop())
        for i in indexes:
            planned[i] = replace(specs[i], joint=family, formula=formula)
    return planned
