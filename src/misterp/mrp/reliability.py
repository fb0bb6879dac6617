"""How much data stands behind an estimate: the base flag on every row.

MRP borrows strength across cells, so it publishes a number even for a group with three
respondents, or none. The number is not wrong, but a reader must see that it rests mostly (or
only) on the model: never a bare number without its base.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BaseFlag", "base_flag"]


class BaseFlag(StrEnum):
    """The size of an estimate's base (respondents asked, in the group), worst last."""

    OK = "ok"
    LOW_BASE = "low_base"
    VERY_LOW_BASE = "very_low_base"
    #: No respondent in the base and group: the estimate comes from the model alone.
    MODELLED_ONLY = "modelled_only"


def base_flag(n: int, low_base: int = 50, very_low_base: int = 30) -> BaseFlag:
    """Flag a base of ``n`` respondents against the thresholds of ``ReportingConfig``.

    Thresholds are strict ("below 50"): a base of exactly ``low_base`` is ``ok``.

    Examples
    --------
    >>> [base_flag(n).value for n in (0, 1, 29, 30, 49, 50)]
    ['modelled_only', 'very_low_base', 'very_low_base', 'low_base', 'low_base', 'ok']
    """
    if very_low_base > low_base:
        raise ValueError(f"very_low_base ({very_low_base}) must not be above low_base ({low_base})")
    if n <= 0:
        return BaseFlag.MODELLED_ONLY
    if n < very_low_base:
        return BaseFlag.VERY_LOW_BASE
    if n < low_base:
        return BaseFlag.LOW_BASE
    return BaseFlag.OK
