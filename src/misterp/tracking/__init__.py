"""Tracking across waves: periods, catalog, changes, trends, funnel and competitor views.

Wave periods and the catalog of complete waves, changes with their probability, trends, the
funnel and competitor views, all computed draw-wise from the draws the model families publish.
"""
