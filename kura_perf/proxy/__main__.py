"""`python -m kura_perf.proxy --upstream URL --api-log FILE [--port N] [--port-file F]`."""

import sys

from kura_perf.proxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
