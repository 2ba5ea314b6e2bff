"""GET /metrics: Prometheus counters, gauges and histograms of one server (prometheus_client, a registry
of its own so that two apps in one process never share figures)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from localai.events import Final

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, loaded_models: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("localai_requests", "Generation requests ended, by how they ended",
                                ["model", "api", "finish"], registry=r)
        self.prompt_tokens = Counter("localai_prompt_tokens", "Prompt tokens of answered requests", ["model"],
                                     registry=r)
        self.cached_tokens = Counter("localai_cached_prompt_tokens",
                                     "Prompt tokens restored from a turn snapshot, not processed again", ["model"],
                                     registry=r)
        self.generated_tokens = Counter("localai_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.waiting = Gauge("localai_requests_waiting", "Requests waiting for a free model instance", registry=r)
        self.running = Gauge("localai_requests_running", "Requests generating now", registry=r)
        self.ttft = Histogram("localai_time_to_first_token_seconds", "Time to first token", ["model"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("localai_inter_token_latency_seconds", "Mean time between tokens, per request",
                             ["model"], buckets=LATENCY_BUCKETS, registry=r)
        Gauge("localai_models_loaded", "Models in memory", registry=r).set_function(loaded_models)

    def record(self, model: str, api: str, final: Final) -> None:
        self.requests.labels(model, api, final.finish_reason).inc()
        self.prompt_tokens.labels(model).inc(final.usage.prompt_tokens)
        self.cached_tokens.labels(model).inc(final.cached_tokens)
        self.generated_tokens.labels(model).inc(final.usage.completion_tokens)
        if final.timings.ttft_ms is not None:
            self.ttft.labels(model).observe(final.timings.ttft_ms / 1000)
        if final.timings.decode_tokens_per_s:
            self.itl.labels(model).observe(1 / final.timings.decode_tokens_per_s)

    def text(self) -> bytes:
        return generate_latest(self.registry)
