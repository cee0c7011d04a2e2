"""A tiny stand-in "kura" for the spec-environment tests: enough of Kura's API for the kura backend's
conversations and summaries stages (kura.types, kura.summarisation), no torch, and an in-tree PEP 517
backend with no build requirements, so pip builds and installs it offline in a second or two.

Its summarise_conversations asks the OpenAI-compatible endpoint (the run's simulator) CALLS times per
conversation: a commit that sets CALLS = 2 is the injected regression (twice the API calls, a
deterministic figure), which `kura-perf versions` must find worse and `--bisect` must find.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PYPROJECT = """[build-system]
requires = []
build-backend = "fakebuild"
backend-path = ["."]
"""

# Builds kura-<VERSION>-py3-none-any.whl from kura/ with zipfile: no setuptools, no download.
FAKEBUILD = '''
import base64, hashlib, pathlib, zipfile

ROOT = pathlib.Path(__file__).parent
VERSION = (ROOT / "VERSION").read_text().strip()
NAME = f"kura-{VERSION}"


def _files():
    for path in sorted((ROOT / "kura").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_bytes()
    info = NAME + ".dist-info"
    yield f"{info}/METADATA", f"Metadata-Version: 2.1\\nName: kura\\nVersion: {VERSION}\\n".encode()
    yield f"{info}/WHEEL", b"Wheel-Version: 1.0\\nGenerator: fakebuild\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as whl:
        for arcname, data in _files():
            whl.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{NAME}.dist-info/RECORD,,")
        whl.writestr(f"{NAME}.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''

TYPES = '''
from datetime import datetime
from typing import Any
from pydantic import BaseModel


class Message(BaseModel):
    created_at: datetime
    role: str
    content: str


class Conversation(BaseModel):
    chat_id: str
    created_at: datetime
    messages: list[Message]
    metadata: dict[str, Any] = {}


class ConversationSummary(BaseModel):
    chat_id: str
    summary: str
    request: str | None = None
    topic: str | None = None
    languages: list[str] | None = None
    task: str | None = None
    concerning_score: int | None = None
    user_frustration: int | None = None
    assistant_errors: list[str] | None = None
    metadata: dict[str, Any] = {}


class Cluster(BaseModel):
    id: str
    name: str
    description: str
    slug: str = ""
    chat_ids: list[str]
    parent_id: str | None = None


class ProjectedCluster(Cluster):
    x_coord: float
    y_coord: float
    level: int
'''

SUMMARISATION = '''
import asyncio
import openai

from kura.types import ConversationSummary

CALLS = {calls}  # requests per conversation


class SummaryModel:
    def __init__(self, model="openai/gpt-4o-mini", max_concurrent_requests=50):
        self.model = model
        self.max_concurrent_requests = max_concurrent_requests
        self.client = openai.AsyncOpenAI()


async def summarise_conversations(conversations, model, checkpoint_manager=None):
    gate = asyncio.Semaphore(model.max_concurrent_requests)

    async def one(conversation):
        async with gate:
            for _ in range(CALLS):
                await model.client.chat.completions.create(
                    model=model.model.split("/", 1)[-1], max_tokens=20,
                    messages=[{{"role": "user", "content": conversation.messages[0].content}}])
        return ConversationSummary(chat_id=conversation.chat_id, summary="a summary", request="a request",
                                   task="a task", languages=["english"], concerning_score=1,
                                   user_frustration=1, assistant_errors=[], topic="t",
                                   metadata={{"conversation_turns": len(conversation.messages)}})

    return list(await asyncio.gather(*(one(c) for c in conversations)))
'''


def write_fake_kura(folder: Path, calls: int = 1, version: str = "0.0.1", note: str = "") -> None:
    (folder / "kura").mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "fakebuild.py").write_text(FAKEBUILD)
    (folder / "VERSION").write_text(version + "\n")
    # Like Kura 0.5.0-0.5.2, an OpenAI client built at import: no import without a key in the environment.
    (folder / "kura" / "__init__.py").write_text(f'"""fake kura{note}"""\nimport openai\n_client = openai.AsyncOpenAI()\n')
    (folder / "kura" / "types.py").write_text(TYPES)
    (folder / "kura" / "summarisation.py").write_text(SUMMARISATION.format(calls=calls))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def fake_kura_history(repo: Path, commits: int = 6, bad_at: int = 4) -> list[str]:
    """A git repository of the fake kura with `commits` commits (oldest first); from commit index
    `bad_at` on, summaries make twice the API calls. The others change only a docstring."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for index in range(commits):
        write_fake_kura(repo, calls=2 if index >= bad_at else 1, note=f" {index}")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {index}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas
