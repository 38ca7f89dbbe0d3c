"""scipy when it is installed. The results layer imports without it (the GPU image has none): the
figures that need its distributions (confidence intervals, tests, fits) are then left out, and
the tables say so in one line (``NEEDS_SCIPY``)."""

from __future__ import annotations

NEEDS_SCIPY = ("95% CIs, significance tests and scaling fits need scipy, which is not installed here "
               "(pip install scipy, then `bench table` or `bench report` again): not computed.")


def scipy_stats():
    """scipy.stats, or None when scipy cannot be imported."""
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


def have_scipy() -> bool:
    return scipy_stats() is not None
