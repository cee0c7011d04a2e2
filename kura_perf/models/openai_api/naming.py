"""Cluster names through a forced function call returning {name, description}."""

from __future__ import annotations

from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kura_perf.models.openai_api.base import ApiModel
from kura_perf.models.openai_api.batch import all_or_fail
from kura_perf.models.openai_api.retries import InvalidOutput
from kura_perf.models.openai_api.settings import ApiSettings
from kura_perf.models.openai_api.summary import compact_json, strict_schema
from kura_perf.tokens import count_chat_tokens, count_tokens


class ClusterNameOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="An imperative sentence of at most ten words naming the cluster")
    description: str = Field(description="Two sentences in the past tense describing the cluster")


CLUSTER_PROMPT = """Summarize all the statements below into a clear, precise, two-sentence description
in the past tense, and give the group a short name (at most ten words) that is specific to it.

<positive_examples>
{examples}
</positive_examples>

Call the name_cluster function with the name and the description."""

_NAME_TOOL = {
    "type": "function",
    "function": {
        "name": "name_cluster",
        "description": "Record the name and description of a cluster of conversations.",
        "parameters": strict_schema(ClusterNameOutput),
        "strict": True,
    },
}



class OpenAIClusterNamer(ApiModel):
    """ClusterNamer through a forced function call returning {name, description}."""

    request_kind = "cluster_name"

    def __init__(self, model: str, settings: ApiSettings, max_examples: int = 25, max_output_tokens: int = 256):
        super().__init__(model, settings)
        self.max_examples = max_examples
        self.max_output_tokens = max_output_tokens
        self._tool_tokens = count_tokens(compact_json([_NAME_TOOL]), model)  # the tool schema is read (and counted) too

    def name_clusters(self, groups: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        return self._run(lambda: all_or_fail([self._name_one(i, g) for i, g in enumerate(groups)]))

    async def _name_one(self, index: int, texts: Sequence[str]) -> tuple[str, str]:
        examples = "\n".join(t.replace("\n", " ") for t in list(texts)[: self.max_examples])
        messages = [{"role": "user", "content": CLUSTER_PROMPT.format(examples=examples)}]
        prompt = count_chat_tokens(messages, self.model) + self._tool_tokens

        async def send() -> tuple[str, str]:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, tools=[_NAME_TOOL],
                tool_choice={"type": "function", "function": {"name": "name_cluster"}},
                max_completion_tokens=self.max_output_tokens,
            )
            calls = completion.choices[0].message.tool_calls or []
            if not calls:
                raise InvalidOutput("no tool call in the answer")
            try:
                named = ClusterNameOutput.model_validate_json(calls[0].function.arguments)
            except ValidationError as exc:
                raise InvalidOutput(f"tool arguments do not fit the schema: {exc.errors()[0]['msg']}") from None
            return named.name.strip(), named.description.strip()

        return await self._with_retries(f"name of cluster {index}", send, prompt,
                                        self.max_output_tokens)

