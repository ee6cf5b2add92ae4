"""``postern-gateway``: run the gateway (the container's CMD) until SIGINT/SIGTERM.

Settings come from the environment (``POSTERN_*``); see README "Settings".
"""

from __future__ import annotations

import asyncio
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from postern.config import get_settings

    from .app import serve

    level = (get_settings().extra.get("POSTERN_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
