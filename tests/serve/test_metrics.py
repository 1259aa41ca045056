"""`GET /metrics`: Prometheus text with request and token counters, engine gauges and latency histograms."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

MODEL_ID = "smollm2-135m"
HELLO = [{"role": "user", "content": "Say hello."}]


def scrape(server) -> dict[str, float]:
    """Every sample of /metrics (no API key sent), keyed by name and labels."""
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_count_requests_tokens_and_latencies(start_server):
    import openai

    server = start_server()  # a fresh app: its registry starts at zero
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=60) as client:
        answer = client.chat.completions.create(model=MODEL_ID, messages=HELLO, temperature=0, max_tokens=8)
        streamed = list(
            client.chat.completions.create(model=MODEL_ID, messages=HELLO, temperature=0, max_tokens=8, stream=True)
        )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="not-served", messages=HELLO, max_tokens=8)
    assert streamed
    metrics = scrape(server)
    assert metrics["llmkit_requests_total{route=/v1/chat/completions,status=2xx}"] == 2
    assert metrics["llmkit_requests_total{route=/v1/chat/completions,status=4xx}"] == 1
    assert metrics["llmkit_prompt_tokens_total{}"] == 2 * answer.usage.prompt_tokens
    assert metrics["llmkit_generation_tokens_total{}"] == 2 * answer.usage.completion_tokens
    assert metrics["llmkit_time_to_first_token_seconds_count{}"] == 2
    assert metrics["llmkit_time_to_first_token_seconds_sum{}"] > 0
    assert metrics["llmkit_inter_token_latency_seconds_count{}"] == 2 * (answer.usage.completion_tokens - 1)
    assert metrics["llmkit_queue_depth{}"] == 0 and metrics["llmkit_running_batch_size{}"] == 0
    assert scrape(server)["llmkit_requests_total{route=/metrics,status=2xx}"] == 1  # counted once answered


def test_routes_with_path_parameters_are_counted_by_template(server):
    headers = {"Authorization": f"Bearer {server.api_key}"}
    httpx.get(f"{server.url}/v1/models/{MODEL_ID}", headers=headers)
    httpx.get(f"{server.url}/no/such/path")
    metrics = scrape(server)
    assert metrics["llmkit_requests_total{route=/v1/models/{model_id},status=2xx}"] >= 1
    assert metrics["llmkit_requests_total{route=unmatched,status=4xx}"] >= 1


def test_metrics_need_no_api_key_and_apps_count_apart(server, start_server):
    other = start_server()
    assert scrape(server) != {} and "llmkit_requests_total{route=/v1/chat/completions,status=2xx}" not in scrape(other)


def test_prefix_cache_reuse_is_reported(start_server):
    server = start_server()  # a fresh engine: its prefix cache starts empty
    system = {"role": "system", "content": "You answer questions about geography in one short sentence. " * 3}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    for question in ("Where is Paris?", "Where is Rome?"):
        body = {"messages": [system, {"role": "user", "content": question}], "max_tokens": 2, "temperature": 0}
        assert httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code == 200
    metrics = scrape(server)
    assert metrics["llmkit_prefix_cache_hit_tokens{}"] >= 16  # the second chat reused the shared system prompt
    assert 0 < metrics["llmkit_prefix_cache_hit_rate{}"] < 1
    assert metrics["llmkit_prefix_cache_queried_tokens{}"] > metrics["llmkit_prefix_cache_hit_tokens{}"]
