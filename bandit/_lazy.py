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

from typing import Any


class _LazyScipyStats:
    def __getattr__(self, attr: str) -> Any:
        from scipy import stats  # cached in sys.modules after the first access

        return getattr(stats, attr)


scipy_stats = _LazyScipyStats()
