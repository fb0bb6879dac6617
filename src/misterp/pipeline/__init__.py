"""One sequence for any model family: validate, lease, stage, fit, publish, track, report.

``sequence.run_pipeline`` runs the steps once, for a family's run handed to it
(``wave.WaveRun`` for the tracker, ``mmm.MMMRun`` for media mix), through a fan-out it is
handed (fits one after another here, worker processes or pods in ``flows/``) and a step runner
(a plain call here; a Prefect task per step in ``flows/``). It is the only layer that knows
both the families and what stands above them (tracking, reporting).
"""
