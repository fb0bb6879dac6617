"""The media-mix model family: weekly KPI and media spend in, channel effects and ROAS out.

One pymc-marketing MMM per market. misterp adds the input contract (``schemas``,
``validation``), the config (``config``), the model's ``sample``/``extract`` functions for the
shared retry loop (``model``), the published tables and records (``outputs``) and the run
(``run``); ``simulate`` makes data with a known truth for the demo, tests and benchmark.
"""
