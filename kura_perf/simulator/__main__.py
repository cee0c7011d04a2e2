"""`python -m kura_perf.simulator --port 8787 --rpm 500 ...`"""

import os
import sys

# One BLAS thread: the simulator's vector maths is small, and multi-threaded OpenBLAS on a busy
# machine makes every request many times slower (spinning threads), which would distort latency.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from kura_perf.simulator.cli import main  # noqa: E402  (after the thread settings)

if __name__ == "__main__":
    sys.exit(main())
