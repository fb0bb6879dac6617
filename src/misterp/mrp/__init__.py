"""The MRP model family: survey waves in, poststratified brand-tracking estimates out.

Validation of the wave input (``schemas``, ``validation``), model planning (``specs``), cells
(``cells``), the Bambi/nutpie binomial model (``model``), poststratification and raking, the
prepared and staged wave (``prepare``, ``staging``) and the wave's steps (``wave``). It uses the
family-agnostic machinery one level up: config, storage, records, the retry loop, health.
"""
