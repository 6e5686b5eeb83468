"""Reallocation: lake statistics → guardrails → policy → the next allocation version.

:mod:`.lake_views` reads the lake's incremental aggregates into per-variant views,
:mod:`.loop` runs one experiment's step (and the periodic loop under a lease), and
:mod:`.worker` runs that loop in a child process of ``serve``.
"""
