"""Logging as every flashclaim process sets it up."""

from __future__ import annotations

import logging


def configure(level: str) -> None:
    """Timestamped lines at ``level``; aiokafka only from WARNING up.

    aiokafka narrates every coordinator lookup and rebalance step at INFO, which buries
    what an operator needs to see.
    """
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
