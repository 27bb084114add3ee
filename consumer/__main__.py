"""``python -m consumer``: run one consumer-group member until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from consumer.run import main

if __name__ == "__main__":
    sys.exit(main())
