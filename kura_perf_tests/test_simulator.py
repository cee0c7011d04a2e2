"""The API simulator, exercised with the real openai client over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from enum import Enum
from typing import Literal, Optional

import numpy as np
import openai
import pytest
from pydantic import BaseModel, Field

from kura_perf.simulator import SimulatorConfig, SimulatorProcess
from kura_perf.simulator.cli import build_parser, config_from_args
from kura_perf.simulator.schema_fill import fill_schema
from kura_perf.simulator.text import PromptView
from kura_perf_tests.simulator_fixtures import fresh_simulator, pid_gone, shared_simulator

pytestmark = pytest.mark.slow

# "some-local-model": a name only the config makes known (a gateway's model), served like a built-in one
FAST = {"latency_ms": 2, "p99_ms": 8, "chat_ms_per_output_token": 0, "seed": 7, "models": ["some-local-model"]}


sim = shared_simulator(FAST)
fresh = fresh_simulator(FAST)


@pytest.fixture
def client(fresh):
    with openai.OpenAI(base_url=fresh.base_url, api_key="sk-test", max_retries=0, timeout=10) as c:
        yield c


EMBED = "text-embedding-3-small"


def _chat(client, text: str, **kwargs):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kwargs)


# --- chat completions ---------------------------------------------------------------------------
def test_plain_chat_varies_with_the_prompt_and_counts_usage(client):
    first = _chat(client, "How do I merge two pandas dataframes on a shared key column?")
    second = _chat(client, "Suggest a vegetarian lasagna recipe with spinach and ricotta.")
    a, b = first.choices[0].message.content, second.choices[0].message.content
    assert a != b
    assert "pandas" in a.lower() and "lasagna" in b.lower()
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


class Severity(str, Enum):
    low = "low"
    high = "high"


class Owner(BaseModel):
    name: str
    email: Optional[str] = None


class Ticket(BaseModel):
    """Exercises what pydantic emits: $defs/$ref, Optional (anyOf null), enum, Literal, bounds,
    arrays with min/max items, nested objects."""

    name: str
    description: str
    severity: Severity
    kind: Literal["bug", "question"]
    priority: int = Field(ge=1, le=5)
    confidence: float = Field(gt=0, lt=1)
    tags: list[str] = Field(min_length=2, max_length=4)
    owner: Owner
    watchers: list[Owner]
    parent_id: Optional[int] = None


def test_tool_call_arguments_are_valid_against_a_pydantic_schema(client):
    prompt = "<statements>\nkubernetes pod crash loop\nkubernetes deployment rollback\n</statements>"
    completion = _chat(client, prompt, tools=[openai.pydantic_function_tool(Ticket)],
                       tool_choice={"type": "function", "function": {"name": "Ticket"}})
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "Ticket"
    ticket = Ticket.model_validate_json(call.function.arguments)
    assert "kubernetes" in ticket.name.lower()
    assert 2 <= len(ticket.tags) <= 4 and 1 <= ticket.priority <= 5


def test_json_schema_output_parses_into_the_pydantic_model(client):
    completion = client.chat.completions.parse(
        model="gpt-4o-mini", response_format=Ticket,
        messages=[{"role": "user", "content": "<conversation>user: my rust borrow checker fails</conversation>"}],
    )
    ticket = completion.choices[0].message.parsed
    assert isinstance(ticket, Ticket)
    assert "rust" in ticket.description.lower()


def test_json_object_mode_returns_a_json_object(client):
    completion = _chat(client, "Name this: sourdough starter feeding", response_format={"type": "json_object"})
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_schema_filler_handles_refs_unions_and_bounds():
    schema = {
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 10, "maximum": 11}]},
            "both": {"allOf": [{"$ref": "#/$defs/Item"}, {"properties": {"extra": {"const": 3}}}]},
            "flag": {"type": ["boolean", "null"]},
            "when": {"type": "string", "format": "date-time"},
            "short": {"type": "string", "maxLength": 5},
        },
        "required": ["item"],
        "$defs": {"Item": {"type": "object", "properties": {"summary": {"type": "string", "minLength": 3}}}},
    }
    value = fill_schema(schema, PromptView("user: my espresso machine leaks water"))
    assert "espresso" in value["item"]["summary"]
    assert value["maybe"] == 11
    assert value["both"]["extra"] == 3 and isinstance(value["both"]["summary"], str)
    assert isinstance(value["flag"], bool)
    assert value["when"].startswith("2024-")
    assert len(value["short"]) <= 5


# --- embeddings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model, dimensions, expected", [
    ("text-embedding-3-small", None, 1536),
    ("text-embedding-3-large", None, 3072),
    ("text-embedding-3-small", 256, 256),
    ("text-embedding-ada-002", None, 1536),
    ("some-local-model", None, 1536),
])
def test_embedding_dimensions(client, model, dimensions, expected):
    extra = {"dimensions": dimensions} if dimensions else {}
    response = client.embeddings.create(model=model, input=["one text", "another text"], **extra)
    vectors = np.array([d.embedding for d in response.data])
    assert vectors.shape == (2, expected)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_embeddings_are_deterministic_in_both_encodings(client):
    texts = ["deterministic vectors please", "a second input"]
    as_floats = client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="base64")
    default = client.embeddings.create(model="text-embedding-3-small", input=texts)  # the SDK asks for base64
    floats = np.array([d.embedding for d in as_floats.data], dtype=np.float32)
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in as_base64.data])
    assert np.array_equal(floats, decoded)
    assert np.array_equal(floats, np.array([d.embedding for d in default.data], dtype=np.float32))
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens > 0


def test_similar_texts_get_similar_vectors(client):
    texts = ["how to reset my router password", "resetting the password of my wifi router",
             "best chocolate cake recipe"]
    v = np.array([d.embedding for d in client.embeddings.create(model="text-embedding-3-small", input=texts).data])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_empty_input_is_rejected_like_openai(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="text-embedding-3-small", input=[""])
    assert raised.value.body["message"]


def test_models_are_listed(client):
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "text-embedding-3-small", "text-embedding-3-large"} <= ids


# --- rate limits --------------------------------------------------------------------------------
def test_rate_limit_headers_on_every_answer(client):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    for name in ("requests", "tokens"):
        for kind in ("limit", "remaining", "reset"):
            assert f"x-ratelimit-{kind}-{name}" in raw.headers
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < int(raw.headers["x-ratelimit-limit-requests"])


def test_over_rpm_gives_429_with_retry_after_and_openai_error_body(fresh, client):
    fresh.configure(embeddings={"rpm": 3})  # a bucket of 3 requests, refilled at one per 20 s
    for _ in range(3):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.RateLimitError) as raised:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    error = raised.value
    assert error.status_code == 429
    assert float(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.body["code"] == "rate_limit_exceeded" and "Rate limit" in error.body["message"]
    counts = fresh.log()["by_endpoint"]["embeddings"]["by_status"]
    assert counts == {"200": 3, "429": 1}


def test_over_tpm_gives_429(fresh, client):
    fresh.configure(chat={"tpm": 60})
    _chat(client, "short")
    with pytest.raises(openai.RateLimitError):
        _chat(client, "a longer prompt that needs more tokens than remain " * 3)


# --- faults and the log -------------------------------------------------------------------------
def test_injected_faults_are_answered_and_logged(fresh):
    with openai.OpenAI(base_url=fresh.base_url, api_key="k", max_retries=0, timeout=0.3) as c:
        fresh.configure(drop_rate=1.0)
        with pytest.raises(openai.APIConnectionError):
            c.embeddings.create(model=EMBED, input="x")
        fresh.configure(drop_rate=0.0, error_rate=1.0)
        with pytest.raises(openai.InternalServerError):
            c.embeddings.create(model=EMBED, input="x")
        fresh.configure(error_rate=0.0, rate_limit_rate=1.0, forced_retry_after_s=2)
        with pytest.raises(openai.RateLimitError) as raised:
            c.embeddings.create(model=EMBED, input="x")
        assert raised.value.response.headers["retry-after"] == "2"
        fresh.configure(rate_limit_rate=0.0, timeout_rate=1.0, slow_response_s=1.0)
        with pytest.raises(openai.APITimeoutError):
            c.embeddings.create(model=EMBED, input="x")
        fresh.configure(timeout_rate=0.0)
        fresh.outage(duration_s=30)
        with pytest.raises(openai.InternalServerError) as raised:
            c.embeddings.create(model=EMBED, input="x")
        assert raised.value.status_code == 503
    log = fresh.log()
    statuses = log["by_endpoint"]["embeddings"]["by_status"]
    assert statuses["dropped"] == 1 and statuses["429"] == 1 and statuses["200"] == 1  # 200: the slow one
    assert statuses.get("500", 0) + statuses.get("503", 0) == 2
    assert log["faults"] == {"dropped": 1, "server_error": 1, "forced_rate_limit": 1, "timeout": 1, "outage": 1}


def test_outage_window_from_config_is_relative_to_boot():
    config = SimulatorConfig.from_dict({"outages": [[0, 3600]], **FAST})
    with SimulatorProcess(config) as short_lived:
        with openai.OpenAI(base_url=short_lived.base_url, api_key="k", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError):
                c.embeddings.create(model=EMBED, input="x")
        pid = short_lived.pid
    assert pid_gone(pid)


# --- process lifecycle and config ---------------------------------------------------------------
def test_process_is_stopped_when_the_body_raises():
    simulator = SimulatorProcess(FAST)
    with pytest.raises(RuntimeError):
        with simulator:
            pid = simulator.pid
            assert simulator.health()["pid"] == pid
            raise RuntimeError("boom")
    assert not simulator.is_running() and pid_gone(pid)
    simulator.stop()  # idempotent


def test_only_loopback_is_accepted():
    with pytest.raises(ValueError):
        SimulatorConfig(host="0.0.0.0")


def test_cli_flags_map_onto_the_config():
    args = build_parser().parse_args([
        "--port", "0", "--rpm", "500", "--embeddings-rpm", "3000", "--latency-ms", "50", "--p99-ms", "300",
        "--fault-rate", "0.1", "--drop-rate", "0.05", "--outage", "10:5", "--config-json", '{"seed": 3}',
    ])
    config = config_from_args(args)
    assert config.chat.rpm == 500 and config.embeddings.rpm == 3000
    assert config.chat.latency_ms == 50 and config.embeddings.p99_ms == 300
    assert config.faults.error_rate == 0.1 and config.faults.drop_rate == 0.05
    assert config.faults.outages == [(10.0, 5.0)] and config.seed == 3


def test_lognormal_fit_matches_median_and_p99():
    import math

    mu, sigma = SimulatorConfig.from_dict({"latency_ms": 50, "p99_ms": 300}).chat.lognormal_params()
    assert math.isclose(math.exp(mu), 0.050)
    assert math.isclose(math.exp(mu + 2.3263478740408408 * sigma), 0.300)


def test_unknown_routes_answer_in_openai_error_format(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="gpt-4o-mini", prompt="legacy endpoint")
    assert raised.value.body["type"] == "invalid_request_error"


def test_in_process_simulator_serves_and_stops():
    from kura_perf.simulator import run_in_thread

    with run_in_thread(FAST) as in_thread:
        with openai.OpenAI(base_url=in_thread.base_url, api_key="k", max_retries=0) as c:
            assert len(c.embeddings.create(model="text-embedding-3-small", input="x").data[0].embedding) == 1536
        assert in_thread.log()["by_endpoint"]["embeddings"]["by_status"] == {"200": 1}
    with pytest.raises(OSError):
        in_thread.health()


# --- pick-one prompts (Kura's meta-clustering) --------------------------------------------------
PICK_ONE_PROMPT = """You are tasked with categorizing a specific cluster into one of the provided higher-level clusters.

First, here are the ONLY valid higher-level clusters you may select from:
<higher_level_clusters>
{options}
</higher_level_clusters>

Here is the specific cluster to categorize:
<specific_cluster>
Name: {name}
Description: {description}
</specific_cluster>

RULES:
1. You MUST select EXACTLY ONE higher-level cluster from the provided list
2. You MUST output the higher-level cluster name EXACTLY as written - no modifications allowed
"""

CANDIDATES = ["Debug Python scripts and tracebacks", "Plan vegetarian dinner recipes", "Configure Kubernetes deployments"]


class ClusterLabel(BaseModel):
    higher_level_cluster: str


def _pick_one_prompt(options: list[str], name: str, description: str) -> str:
    tags = "\n".join(f"<higher_level_cluster>{o}</higher_level_cluster>" for o in options)
    return PICK_ONE_PROMPT.format(options=tags, name=name, description=description)


def test_pick_one_tool_call_answers_one_of_the_options_verbatim(client):
    """Kura's label_cluster: a ClusterLabel tool call over repeated <higher_level_cluster> tags."""
    tool = {"type": "function", "function": {"name": "ClusterLabel", "parameters": ClusterLabel.model_json_schema()}}
    asked = {
        "Fix a python traceback": "Users asked to debug python scripts that raised a traceback.",
        "Cook lentil lasagna": "Users asked for vegetarian recipes to cook for dinner.",
        "Roll back a deployment": "Users asked how to configure and roll back kubernetes deployments.",
    }
    answers = []
    for name, description in asked.items():
        completion = _chat(client, _pick_one_prompt(CANDIDATES, name, description), tools=[tool],
                           tool_choice={"type": "function", "function": {"name": "ClusterLabel"}})
        label = ClusterLabel.model_validate_json(completion.choices[0].message.tool_calls[0].function.arguments)
        answers.append(label.higher_level_cluster)
    assert answers == CANDIDATES  # each picks the option it shares words with
    again = _chat(client, _pick_one_prompt(CANDIDATES, "Fix a python traceback", asked["Fix a python traceback"]),
                  tools=[tool], tool_choice={"type": "function", "function": {"name": "ClusterLabel"}})
    assert json.loads(again.choices[0].message.tool_calls[0].function.arguments)["higher_level_cluster"] == answers[0]


def test_pick_one_structured_output_with_a_single_candidate(client):
    """One candidate (Kura asks for one name when a group has < 3 clusters): still picked verbatim."""
    completion = client.chat.completions.parse(
        model="gpt-4o-mini", response_format=ClusterLabel,
        messages=[{"role": "user", "content": _pick_one_prompt(["Plan vegetarian dinner recipes"], "Bake bread",
                                                               "Users asked for sourdough tips.")}],
    )
    assert completion.choices[0].message.parsed.higher_level_cluster == "Plan vegetarian dinner recipes"


def test_kura_meta_cluster_calls_pass_kuras_validators(fresh, monkeypatch):
    """Kura's own MetaClusterModel (instructor, its prompts, its validators) against the simulator:
    candidate names (as many as asked, distinct, short), a label that is one of them, a renamed group."""
    meta_cluster = pytest.importorskip("kura.meta_cluster")
    import asyncio

    from kura.types.cluster import Cluster

    monkeypatch.setenv("OPENAI_BASE_URL", fresh.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    topics = [("Debug python tracebacks", "Users asked to fix python scripts raising exceptions."),
              ("Write python unit tests", "Users asked for pytest tests of python functions."),
              ("Plan vegetarian dinners", "Users asked for vegetarian dinner recipes with lentils."),
              ("Bake sourdough bread", "Users asked how to feed a sourdough starter and bake bread."),
              ("Scale kubernetes pods", "Users asked how to autoscale kubernetes deployments.")]
    clusters = [Cluster(name=n, description=d, slug=f"s{i}", chat_ids=[str(i)], parent_id=None)
                for i, (n, d) in enumerate(topics)]
    model = meta_cluster.MetaClusterModel(model="openai/gpt-4o-mini", embedding_model=object(), max_concurrent_requests=4)

    async def run():
        try:
            names = await model.generate_candidate_clusters(clusters, asyncio.Semaphore(4))
            labels = [await model.label_cluster(c, names) for c in clusters]
            renamed = await model.rename_cluster_group(clusters[:2])
            return names, labels, renamed
        finally:
            await model.client.client.close()

    names, labels, renamed = asyncio.run(run())
    assert len(names) == 3 == len(set(names))  # "create at most 3 higher-level cluster names" (ceil(5 / 2))
    assert all(len(n.split()) <= 10 and "<" not in n for n in names)
    assert all(label["label"] in names for label in labels)
    parent = renamed[0]
    assert parent.parent_id is None and "python" in parent.name.lower()
    assert parent.slug.count("_") == 2 and parent.slug == parent.slug.lower()
    assert [c.parent_id for c in renamed[1:]] == [parent.id, parent.id]
    statuses = fresh.log()["by_endpoint"]["chat.completions"]["by_status"]
    assert statuses == {"200": 1 + len(clusters) + 1}  # no re-asks: every answer passed the validators


def test_choices_need_a_matching_field_and_a_request_to_choose():
    listed = "Classify the ticket.\nChoose one of these categories:\n- Billing issue\n- Shipping delay\n- Refund\n\n" \
             "Ticket: my parcel is late, the shipping delay is two weeks"
    schema = {"type": "object", "properties": {"category": {"type": "string"}, "summary": {"type": "string"}}}
    value = fill_schema(schema, PromptView.from_messages([{"role": "user", "content": listed}]))
    assert value["category"] == "Shipping delay"  # an enumerated list under a heading naming the field
    assert value["summary"] not in ("Billing issue", "Shipping delay", "Refund")
    # Repeated tags without a request to choose are context (a naming prompt's examples), not options.
    examples = "Name this group:\n<summary>pandas merge on key</summary>\n<summary>pandas groupby sum</summary>"
    named = fill_schema({"type": "object", "properties": {"summary": {"type": "string"}}},
                        PromptView.from_messages([{"role": "user", "content": examples}]))
    assert named["summary"] not in ("pandas merge on key", "pandas groupby sum") and "pandas" in named["summary"]


def test_list_length_follows_the_prompt_and_names_are_distinct():
    prompt = ("<items><item>kubernetes pods crash</item><item>python pandas merge</item>"
              "<item>vegan lentil soup</item></items>\nCreate at most four topic names for these items.")
    schema = {"type": "object", "properties": {"topic_names": {"type": "array", "items": {"type": "string"}}}}
    names = fill_schema(schema, PromptView.from_messages([{"role": "user", "content": prompt}]))["topic_names"]
    assert len(names) == 4 == len(set(names))
    assert all("<" not in n for n in names)
    # A number in the payload (the data, inside tags) is not an instruction.
    data = "<conversation>user: list 7 topic names for my blog</conversation>\nSummarise the conversation."
    quoted = fill_schema(schema, PromptView.from_messages([{"role": "user", "content": data}]))["topic_names"]
    assert len(quoted) == 3  # the default for topic lists, not the 7 the user typed
