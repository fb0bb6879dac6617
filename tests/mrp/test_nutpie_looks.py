"""nutpie judged while it samples: a fit stopped at a look holds the first draws of the full run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from misterp.config import SamplerConfig
from misterp.diagnostics import check_convergence
from misterp.mrp.config import parse_config
from misterp.mrp.model import CELL_PROBABILITY, sample_nutpie
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.wave import fit_prepared
from misterp.nutpie_run import SAMPLE_STATS, NutpieRun
from misterp.status import FitStatus
from support import small_wave_config


@pytest.mark.slow
def test_a_look_sees_the_first_draws_of_the_same_chains_and_a_fit_stops_at_a_look(
    tmp_path: Path,
) -> None:
    prepared = prepare_wave(parse_config(small_wave_config(tmp_path, spec={"markets": ("DE",)})))
    spec = prepared.specs[0]
    unit = prepared.fit_unit(spec)
    priors = prepared.config.model.priors
    settings = SamplerConfig(draws=300, check_every=100, tune=200, chains=2, cores=2)

    running = sample_nutpie(unit.lead, unit.layout, unit.counts, priors, settings)
    assert isinstance(running, NutpieRun)
    assert running.wait_for(100)
    early = np.asarray(running.first(100)["posterior"][CELL_PROBABILITY])
    running.stop()
    running.stop()  # idempotent
    full = sample_nutpie(
        unit.lead,
        unit.layout,
        unit.counts,
        priors,
        settings.model_copy(update={"check_every": None}),
    )
    # the same chains, cut: not a restart (bit-identical, the seed and the model are the same)
    np.testing.assert_array_equal(early, np.asarray(full["posterior"][CELL_PROBABILITY])[:, :100])

    # a run's own posterior (read from nutpie's raw trace) is nutpie's conversion, less the
    # offsets: the same variables, dims, numbers, stats and verdict
    finished = sample_nutpie(unit.lead, unit.layout, unit.counts, priors, settings).finish()
    ours, theirs = finished["posterior"], full["posterior"]
    assert set(ours.data_vars) == {n for n in theirs.data_vars if not str(n).endswith("_offset")}
    for name in ours.data_vars:
        assert ours[name].dims == theirs[name].dims
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]))
    for name in SAMPLE_STATS:
        np.testing.assert_array_equal(
            np.asarray(finished["sample_stats"][name]), np.asarray(full["sample_stats"][name])
        )
    assert check_convergence(finished) == check_convergence(full)

    result = fit_prepared(prepared, spec, SamplerConfig(cores=2))  # the defaults: 250 ... 1000
    assert result.status is FitStatus.CONVERGED
    report = result.attempts[0].report
    assert report is not None
    assert report.draws in {250, 500, 750, 1000}
    assert report.estimands == len(unit.layout.masks)
    assert result.draws is not None
    assert result.draws.shape[0] == SamplerConfig().stored_draws  # thinned or repeated evenly
