"""The analyst report of a wave: tables (xlsx and CSV) and one self-contained HTML page.

``tables`` builds the report's tables from a wave's published files (pure functions),
``charts`` draws plotly figures from those tables, ``html`` lays out the page and ``write``
reads the store and writes ``OUTPUT/WAVE/report/`` (``index.html`` last).
"""
