"""``banditlake demo``: three digit classifiers run as a bandit experiment on real data.

The models are trained on scikit-learn's handwritten digits, exported to ONNX and
registered through the REST API of a service started in this process; held-out digits
are replayed through its HTTP endpoint with late labels, and the summary shows how the
policy moved traffic to the most accurate model.
"""

from __future__ import annotations

from api.demo._run import EXPERIMENT, run_demo
from api.demo.errors import DemoError

__all__ = ["EXPERIMENT", "DemoError", "run_demo"]
