"""A custom step for the resume test: fails while the file named by $SHAPES_TEST_FAIL_FLAG exists."""

import os
from pathlib import Path

from kura_perf.pipeline.custom_steps import redact_pii

FLAG_ENV = "SHAPES_TEST_FAIL_FLAG"


def flaky_redact(data):
    flag = os.environ.get(FLAG_ENV)
    if flag and Path(flag).exists():
        raise RuntimeError("injected failure in the custom step")
    return redact_pii(data)


def drops_a_table(data):
    return type(data)(tables={}, arrays=dict(data.arrays))
