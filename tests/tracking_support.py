"""Hand-written published waves for the tracking tests: manifests, draws and estimates.

No fitting at all: each wave is what ``publish_wave`` would leave in the store, with draws the
test chooses, so changes and trends can be checked against exact numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.records import CENSUS_HASH_PREFIX, Manifest, ManifestModel
from misterp.records import StatusCounts
from misterp.status import FitStatus
from misterp.storage import ResultStore

GROUPS: dict[str, dict[str, list[str]]] = {"women": {"gender": ["female"]}}
FORMULA = "p(yes, n) ~ 1 + gender + (1|age)"


def spec(key: str, *, formula: str = FORMULA, base: str | None = None) -> dict[str, Any]:
    market, question_id, option = key.split("/")
    base_question, base_option = base.split("=") if base else (None, None)
    return {
        "market": market,
        "question_id": question_id,
        "option": option,
        "formula": formula,
        "brand": question_id.rsplit("_", 1)[-1],
        "base_question": base_question,
        "base_option": base_option,
    }


def publish_fake_wave(
    store: ResultStore,
    wave: str,
    draws: Mapping[str, Mapping[str, np.ndarray] | None],
    *,
    target_groups: Mapping[str, Any] = GROUPS,
    census: str = "census-1",
    market_census: Mapping[str, str] | None = None,
    formulas: Mapping[str, str] | None = None,
    statuses: Mapping[str, FitStatus] | None = None,
    tracking: Mapping[str, Any] | None = None,
    priors: Mapping[str, Any] | None = None,
    complete: bool = True,
) -> None:
    """Write a wave: ``draws[key][group]`` is that model's (draws,) posterior (None: failed)."""
    models, rows = [], []
    for key, groups in draws.items():
        status = (statuses or {}).get(key, FitStatus.CONVERGED if groups else FitStatus.FAILED)
        model_spec = spec(key, formula=(formulas or {}).get(key, FORMULA))
        path = None
        if groups:
            path = f"draws/{key}.parquet"
            frame = pd.concat(
                [
                    pd.DataFrame(
                        {
                            "target_group": group,
                            "draw": np.arange(len(values), dtype=np.int32),
                            "value": np.asarray(values, dtype=np.float32),
                        }
                    )
                    for group, values in groups.items()
                ],
                ignore_index=True,
            )
            store.write_parquet(f"{wave}/{path}", frame)
        for group in groups or {"all": None}:
            values = np.asarray((groups or {}).get(group, [np.nan]), dtype=float)
            rows.append(
                {
                    "wave": wave,
                    **{k: model_spec[k] for k in ("market", "question_id", "option", "brand")},
                    "target_group": group,
                    "mean": float(values.mean()),
                    "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    "q05": float(np.quantile(values, 0.05)),
                    "q95": float(np.quantile(values, 0.95)),
                    "n": 100,
                    "status": status.value,
                }
            )
        models.append(
            ManifestModel(
                key=key,
                spec=model_spec,
                spec_hash=hashlib.sha256(str(model_spec).encode()).hexdigest()[:16],
                data_hash="d",
                status=status,
                estimate_status=status,
                attempts=(),
                seconds=1.0,
                fit_id=None,
                n_respondents=100,
                draws=path,
            )
        )
    estimates = store.write_parquet(f"{wave}/estimates.parquet", pd.DataFrame(rows))
    if not complete:
        return
    own = {m.key: m.status for m in models}
    counts = StatusCounts.count(own, own)
    config: dict[str, Any] = {"target_groups": dict(target_groups)}
    if tracking is not None:
        config["tracking"] = dict(tracking)
    if priors is not None:
        config["model"] = {"priors": dict(priors)}
    manifest = Manifest(
        wave=wave,
        input=None,
        input_hashes={"poststrat": census}
        | {f"{CENSUS_HASH_PREFIX}{m}": h for m, h in (market_census or {}).items()},
        versions={},
        config=config,
        counts=counts,
        wall_seconds=None,
        files={},
        estimates_sha256=hashlib.sha256(estimates).hexdigest(),
        models=tuple(models),
        healthy=counts.healthy,
    )
    store.publish(wave, manifest.to_json())
