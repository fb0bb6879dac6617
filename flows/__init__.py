"""Prefect flows and the command line: the wiring around the misterp core."""
