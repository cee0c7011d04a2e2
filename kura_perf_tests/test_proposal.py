"""The proposal's figures live in kura_perf/proposal.py only: the modules that compare against them use
those objects, and no other module writes one of them out again."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import kura_perf
from kura_perf import proposal
from kura_perf.report.hardware import proposal_guess
from kura_perf.report.tables import expected_clusters_text
from kura_perf_tests.source_trees import parse

PACKAGE = Path(kura_perf.__file__).parent


def _figure_tuples() -> set[tuple[float, ...]]:
    """Every composite figure of the proposal module, as a tuple of floats."""
    figures = {proposal.CONVERSATION_VOLUMES, proposal.CONCURRENCY_LEVELS, proposal.STORAGE_TOTAL_KB_PER_CONVERSATION,
               *proposal.EXPECTED_CLUSTERS.values(), *proposal.STORAGE_KB_PER_CONVERSATION.values()}
    for tier in proposal.HARDWARE_TIERS:
        figures.add((tier.ram_gb, tier.cores, tier.storage_gb))
        if math.isfinite(tier.up_to_conversations):
            figures.add((tier.up_to_conversations, tier.ram_gb))  # a (scale, RAM) budget row
    return {tuple(float(v) for v in figure) for figure in figures}


def _figure_texts() -> set[str]:
    """The figures as the report writes them, the way the proposal does ("500–2K", "64 GB+", "16+ cores")."""
    texts = {expected_clusters_text(n) for n in proposal.EXPECTED_CLUSTERS}
    for tier in proposal.HARDWARE_TIERS:
        texts.update(part for part in proposal_guess(int(min(tier.up_to_conversations, 1e9))) if "+" in part)
    return texts


def _numbers(node: ast.AST) -> tuple[float, ...] | None:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
            isinstance(e, ast.Constant) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool)
            for e in node.elts):
        return tuple(float(e.value) for e in node.elts)
    return None


def restated_figures(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each literal in `tree` that restates a proposal figure: a tuple of the same
    numbers, a string quoting one the proposal's way, or a rate limit written as a number."""
    tuples, texts = _figure_tuples(), _figure_texts()
    rpms = {proposal.TYPICAL_CHAT_RPM, proposal.TYPICAL_EMBEDDINGS_RPM}
    found = []
    for node in ast.walk(tree):
        numbers = _numbers(node)
        if numbers is not None and numbers in tuples:
            found.append((node.lineno, f"the figure {numbers}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, f"the text {text!r}") for text in texts if text in node.value]
        elif isinstance(node, ast.keyword) and node.arg and "rpm" in node.arg.lower() \
                and isinstance(node.value, ast.Constant) and node.value.value in rpms:
            found.append((node.value.lineno, f"{node.arg}={node.value.value}"))
    return found


def test_no_module_restates_a_proposal_figure():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "proposal.py":
            continue
        found += [f"{relative}:{line}: {what}" for line, what in restated_figures(parse(path.read_text("utf-8")))]
    assert not found, f"import these from kura_perf.proposal instead: {found}"


def test_the_detector_sees_restated_figures():
    code = ('LEVELS = (1, 5, 10, 20, 50)\nBUDGET = (10.0, 15)\nTEXT = "expected 500–2K clusters"\n'
            'guess = "64 GB+"\nEndpointConfig(rpm=3000)\nother = (10, 51)\nEndpointConfig(rpm=42)\n'
            'BUDGET_GB = ((1_000, 4), (10_000, 16))\n')
    assert [line for line, _ in restated_figures(parse(code))] == [1, 2, 3, 4, 5, 8, 8]


def test_budgets_use_the_proposal_figures():
    from kura_perf.checks import budgets
    from kura_perf.scales import SCALES

    for label, n in SCALES.items():
        assert budgets.memory_budget_mb(n) == proposal.hardware_tier(n).ram_gb * 2**30 / 10**6
        if n in proposal.EXPECTED_CLUSTERS:
            assert budgets.EXPECTED_CLUSTERS[label] == proposal.EXPECTED_CLUSTERS[n]
    assert budgets.STORAGE_KB_PER_CONVERSATION == max(proposal.STORAGE_TOTAL_KB_PER_CONVERSATION)
    # the two scales the §1.2 matrix has no row for keep the nearest row's share of the conversations
    assert budgets.EXPECTED_CLUSTERS["100"] == (1, 5) and budgets.EXPECTED_CLUSTERS["100k"] == (1_000, 4_000)


def test_the_scale_partitions_are_the_proposal_volumes_plus_20k():
    from kura_perf.scales import EXTRA_VOLUMES, SCALES

    # 20K is ours (the largest round scale the shipped CLINC150 holds), not the proposal's.
    assert set(SCALES.values()) == {*proposal.CONVERSATION_VOLUMES, *EXTRA_VOLUMES} and EXTRA_VOLUMES == (20_000,)
    assert list(SCALES) == ["100", "1k", "5k", "10k", "20k", "50k", "100k"]


def test_report_tables_quote_the_proposal_as_it_writes_them():
    from kura_perf.report import tables
    from kura_perf.report.analysis import expected_embedding_kb

    assert tables.PROPOSAL_MATRIX_SCALES == tuple(proposal.EXPECTED_CLUSTERS)
    assert [expected_clusters_text(n) for n in tables.PROPOSAL_MATRIX_SCALES] == ["10–50", "50–200", "100–500", "500–2K"]
    assert expected_clusters_text(100) == "—"
    assert expected_embedding_kb(None) == proposal.STORAGE_KB_PER_CONVERSATION["embeddings"]
    assert expected_embedding_kb(2 * proposal.STORAGE_EMBEDDING_DIMENSION) == tuple(
        2 * kb for kb in proposal.STORAGE_KB_PER_CONVERSATION["embeddings"])


def test_hardware_guesses_are_the_proposal_tiers():
    assert proposal_guess(1_000) == ("4 GB", "2 cores", "1 GB")
    assert proposal_guess(10_000) == ("16 GB", "8 cores", "10 GB")
    assert proposal_guess(100_000) == proposal_guess(1_000_000) == ("64 GB+", "16+ cores",
                                                                    "100 GB+ · consider distributed")
    assert proposal.hardware_tier(50_000).name == "high-scale"  # between the 10K and 100K+ rows
    assert math.isinf(proposal.HARDWARE_TIERS[-1].up_to_conversations)


def test_simulator_limits_and_sweep_levels_are_the_proposal_figures():
    from kura_perf.cli.main import build_parser
    from kura_perf.experiments.sweep import DEFAULT_LEVELS
    from kura_perf.simulator.config import SimulatorConfig

    config = SimulatorConfig()
    assert config.chat.rpm == proposal.TYPICAL_CHAT_RPM and config.embeddings.rpm == proposal.TYPICAL_EMBEDDINGS_RPM
    assert DEFAULT_LEVELS == proposal.CONCURRENCY_LEVELS
    args = build_parser().parse_args(["sweep"])
    assert tuple(args.levels) == proposal.CONCURRENCY_LEVELS
