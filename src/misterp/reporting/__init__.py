"""The analyst reports: of a wave and of a media-mix run, tables and one self-contained page.

``tables`` builds a wave report's tables from its published files (pure functions), ``charts``
draws plotly figures from those tables, ``html`` lays out the page and ``write`` reads the store
and writes ``OUTPUT/WAVE/report/`` (``index.html`` last); ``mmm_tables``, ``mmm_charts`` and
``mmm_report`` do the same for ``OUTPUT/mmm/RUN/report/``. Above tracking and both families.
"""
