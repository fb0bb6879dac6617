"""Tracking across waves: catalog, changes, trends, funnel and competitor views.

Above the model families: the catalog of complete waves, changes with their probability,
trends, and the funnel and competitor views published with each wave, all computed draw-wise
from what the tracker publishes (``misterp.mrp.published``), never from its models.
"""
