"""The example Kura scripts in examples/: how many lines a user writes, and running them offline.

Lines of code are counted, never typed in: a line counts when it holds a Python token other than a
comment, and is not part of a docstring (module, class or function). Blank lines, comment lines and
docstrings are what a reader skips; everything else is what a user has to write.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from kura_perf.errors import KuraPerfError

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
EXAMPLES = {  # name -> (file, what it shows)
    "basic": ("kura_basic.py", "Kura's defaults: summaries, clusters, meta clusters, 2-D map"),
    "advanced": ("kura_advanced.py", "swapped summary, embedding and clustering models; JSONL checkpoints"),
}
_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENCODING, tokenize.ENDMARKER}


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def count_loc(source: str) -> int:
    """Non-blank, non-comment, non-docstring lines of Python source."""
    docstrings = _docstring_lines(ast.parse(source))
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _NOT_CODE:
            continue
        code_lines.update(line for line in range(token.start[0], token.end[0] + 1) if line not in docstrings)
    return len(code_lines)


@dataclass
class ExampleLoc:
    name: str
    path: Path
    description: str
    code_lines: int
    total_lines: int


def example_loc(examples_dir: Path = EXAMPLES_DIR) -> list[ExampleLoc]:
    """Counted from the files on disk; refuses if the examples folder is missing."""
    out = []
    for name, (filename, description) in EXAMPLES.items():
        path = Path(examples_dir) / filename
        if not path.exists():
            raise KuraPerfError(f"example script {path} not found (the examples/ folder ships with the repository)")
        source = path.read_text(encoding="utf-8")
        out.append(ExampleLoc(name, path, description, count_loc(source), len(source.splitlines())))
    return out


def example_env(base_url: str, api_key: str = "sk-kura-perf-simulator", base: dict | None = None) -> dict:
    """The environment an example runs in: Kura's OpenAI clients pointed at base_url (the simulator)."""
    env = dict(os.environ if base is None else base)
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=api_key, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def run_example(script: Path, args: list[str], env: dict, python: str = sys.executable,
                timeout_s: float = 900.0) -> subprocess.CompletedProcess:
    """Run one example script as a user would (its own interpreter); raise with its output if it fails."""
    try:
        proc = subprocess.run([python, str(script), *args], env=env, capture_output=True, text=True,
                              timeout=timeout_s, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise KuraPerfError(f"{script.name} did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise KuraPerfError(f"{script.name} exited with code {proc.returncode}:\n{tail}")
    return proc


def printed_clusters(stdout: str) -> int:
    """The examples print one line per cluster: 'name (N conversations)'."""
    return sum(1 for line in stdout.splitlines() if line.rstrip().endswith("conversations)"))
