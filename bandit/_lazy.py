"""``scipy.stats``, imported on first use.

Importing scipy.stats takes one to two seconds. The serving process imports ``bandit``
for its policies' routing, which needs only numpy; the statistics that need scipy run
in the reallocation process, the report and the notebooks. Modules that use it write::

    if TYPE_CHECKING:
        from scipy import stats as sps
    else:
        from bandit._lazy import scipy_stats as sps

so type checkers see the real module and the first attribute access imports it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


scipy_stats = _LazyModule("scipy.stats")
