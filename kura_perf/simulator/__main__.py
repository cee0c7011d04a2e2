"""`python -m kura_perf.simulator --port 8787 --rpm 500 ...`"""

import sys

from kura_perf.settings.third_party_env import single_blas_thread

# One BLAS thread: the simulator's vector maths is small, and multi-threaded OpenBLAS on a busy
# machine makes every request many times slower (spinning threads), which would distort latency.
single_blas_thread()

from kura_perf.simulator.cli import main  # noqa: E402  (after the thread settings)

if __name__ == "__main__":
    sys.exit(main())
