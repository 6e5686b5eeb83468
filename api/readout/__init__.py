"""Readout: what people read about an experiment.

:mod:`.report` builds the report (intervals, tests, verdict) behind ``GET /report``;
:mod:`.panels` builds the dashboard's panels from the report, the allocation history and
the lake.
"""
