"""The scale partitions: label -> number of conversations, the proposal's §1.1 volumes (kura_perf/proposal.py)
plus 20K, which the proposal does not name: the largest round scale the shipped CLINC150 dataset holds
(22,500 conversations, kura_perf/datasets), so real labelled data is measured as far as it goes."""

from kura_perf.errors import KuraPerfError
from kura_perf.proposal import CONVERSATION_VOLUMES

# Volumes beyond the proposal's (kept out of proposal.py, which holds only what the proposal states).
EXTRA_VOLUMES = (20_000,)
VOLUMES = tuple(sorted({*CONVERSATION_VOLUMES, *EXTRA_VOLUMES}))


def scale_label(n: int) -> str:
    """100 -> "100", 1,000 -> "1k", 50,000 -> "50k": the partition key (and folder name) of a volume."""
    return f"{n // 1_000}k" if n >= 1_000 and n % 1_000 == 0 else str(n)


SCALES: dict[str, int] = {scale_label(n): n for n in VOLUMES}


def scale_count(label: str) -> int:
    try:
        return SCALES[label]
    except KeyError:
        raise KuraPerfError(f"unknown scale '{label}'; expected one of {', '.join(SCALES)}") from None
