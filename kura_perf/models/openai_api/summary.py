"""Summaries through chat completions with a strict json_schema response format (Kura's schema)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kura_perf.corpus.types import Conversation
from kura_perf.models.openai_api.base import ApiModel
from kura_perf.models.openai_api.batch import all_or_fail
from kura_perf.models.openai_api.retries import InvalidOutput
from kura_perf.models.openai_api.settings import ApiSettings
from kura_perf.models.protocols import SUMMARY_FIELDS, Progress, adaptive_input_chunk
from kura_perf.tokens import count_chat_tokens, count_tokens


class ConversationSummaryOutput(BaseModel):
    """Kura's ConversationSummary fields, as the structured-output schema."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="One or two sentences: what the user did, from their perspective.")
    request: str = Field(description="Starts with: The user's overall request for the assistant is to")
    task: str = Field(description="Starts with: The task is to")
    languages: list[str] = Field(description="Main human and programming languages, lower case")
    concerning_score: int = Field(ge=1, le=5, description="1 = not concerning, 5 = very concerning")
    user_frustration: int = Field(ge=1, le=5, description="1 = not frustrated, 5 = very frustrated")
    assistant_errors: list[str] = Field(description="Errors the assistant made; empty if none")


assert tuple(ConversationSummaryOutput.model_fields) == SUMMARY_FIELDS

SUMMARY_PROMPT = """The following is a conversation between an AI assistant and a user:

<messages>
{transcript}
</messages>

Your job is to extract key information from this conversation. Be descriptive and assume neither good
nor bad faith. Do not include any personally identifiable information or proper nouns.

Extract: a summary of at most two sentences from the user's perspective; the user's overall request
("The user's overall request for the assistant is to ..."); the task ("The task is to ..."); the main
languages, human and programming, lower case; a concerning score from 1 (not at all) to 5 (very);
the user's frustration from 1 (not at all) to 5 (very); and the assistant's errors (empty if none)."""


def compact_json(value: Any) -> str:
    """JSON as it goes over the wire, for token estimates."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def strict_schema(model: type[BaseModel]) -> dict:
    """Pydantic's schema with every property required and no extras, as strict mode wants."""
    schema = model.model_json_schema()

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


class OpenAISummaryModel(ApiModel):
    """SummaryModel through chat completions with a json_schema response format."""

    request_kind = "summary"

    def __init__(self, model: str, settings: ApiSettings, max_output_tokens: int = 512):
        super().__init__(model, settings)
        self.max_output_tokens = max_output_tokens
        self._response_format = {
            "type": "json_schema",
            "json_schema": {"name": "conversation_summary", "strict": True,
                            "schema": strict_schema(ConversationSummaryOutput)},
        }
        # The schema is part of what the model reads (and what rate limits count).
        self._schema_tokens = count_tokens(compact_json(self._response_format["json_schema"]), model)

    @property
    def summarises_with_progress(self) -> bool:
        """Adaptive: take large chunks and report progress per answer (models/protocols.py says why)."""
        return self.settings.adaptive

    @property
    def input_chunk(self) -> int:
        """Conversations per call when adaptive (protocols.adaptive_input_chunk says why)."""
        return adaptive_input_chunk(self.settings.inflight_cap)

    def summarise(self, conversations: Sequence[Conversation], progress: Progress | None = None) -> list[dict]:
        if progress is None:
            return self._run(lambda: all_or_fail([self._summarise_one(c) for c in conversations]))
        total, step = len(conversations), max(1, len(conversations) // 100)
        done = 0

        async def one(conversation: Conversation) -> dict:
            nonlocal done
            result = await self._summarise_one(conversation)
            done += 1
            if done % step == 0 or done == total:  # about 100 calls, not one per answer: the loop's CPU
                progress(done, total)
            return result

        return self._run(lambda: all_or_fail([one(c) for c in conversations]))

    async def _summarise_one(self, conversation: Conversation) -> dict:
        messages = [{"role": "user", "content": SUMMARY_PROMPT.format(transcript=conversation.text())}]
        prompt = count_chat_tokens(messages, self.model) + self._schema_tokens

        async def send() -> dict:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages,
                # Sent as it is (extra_body), not through the SDK's typed transform, which walked the whole
                # schema on every call: ~0.9 of ~6.8 ms of client CPU per call (cProfile, 500 calls).
                extra_body={"response_format": self._response_format},
                max_completion_tokens=self.max_output_tokens,
            )
            message = completion.choices[0].message
            if not message.content:
                raise InvalidOutput(f"no content (refusal: {message.refusal!r})")
            try:
                return ConversationSummaryOutput.model_validate_json(message.content).model_dump()
            except ValidationError as exc:
                raise InvalidOutput(f"summary does not fit the schema: {exc.errors()[0]['msg']}") from None

        return await self._with_retries(f"summary of chat {conversation.chat_id}", send, prompt,
                                        self.max_output_tokens)

