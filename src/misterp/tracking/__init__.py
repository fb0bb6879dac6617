"""Tracking across waves: wave periods and the catalog of complete waves, changes with their
probability, trends, the funnel and competitor views, all computed draw-wise from the draws
the model families publish.
"""
