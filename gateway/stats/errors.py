"""What experiment commands can refuse: kept apart so the CLI can catch them without
loading the statistics libraries (scipy, statsmodels) for every command."""

from __future__ import annotations


class ExperimentError(ValueError):
    """An experiment cannot be stored or changed as asked (the message says why)."""


class ExperimentNotFound(LookupError):
    """No experiment has that id."""
