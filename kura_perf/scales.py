"""The scale partitions: label -> number of conversations."""

SCALES: dict[str, int] = {
    "100": 100,
    "1k": 1_000,
    "5k": 5_000,
    "10k": 10_000,
    "50k": 50_000,
    "100k": 100_000,
}


def scale_count(label: str) -> int:
    from kura_perf.errors import KuraPerfError

    try:
        return SCALES[label]
    except KeyError:
        raise KuraPerfError(f"unknown scale '{label}'; expected one of {', '.join(SCALES)}") from None
