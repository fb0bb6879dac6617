"""The MRP model family: survey waves in, poststratified brand-tracking estimates out.

Validation of the wave input (``schemas``, ``validation``), model planning (``specs``), cells
(``cells``), the Bambi/nutpie binomial model (``model``), poststratification and raking, the
prepared and staged wave (``prepare``, ``staging``), its config, records and fits
(``config``, ``records``, ``fits``) and the wave's steps (``wave``). It imports only the
family-agnostic machinery one level up: config sections, storage, records, the retry loop, the
fit store, health, the lease; tracking and reporting stand above it (``published``).
"""
