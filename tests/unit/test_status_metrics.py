"""vLLM's /metrics: current and deprecated names, NIM's unprefixed ones, garbage, and rates between samples."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.runtimes.status.metrics import (
    FIRST_SAMPLE_NOTE,
    RESET_NOTE,
    MetricsSample,
    MetricsUnreadable,
    engine_metrics,
    parse_metrics,
)

CURRENT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="acme/tiny"} 2.0
vllm:num_requests_running{engine="1",model_name="acme/tiny"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="acme/tiny"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="acme/tiny"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="acme/tiny"} 0.5
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="acme/tiny"} 1000.0
vllm:prompt_tokens_created{engine="0",model_name="acme/tiny"} 1.7e+09
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="acme/tiny"} 400.0
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="acme/tiny"} 3.0
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="acme/tiny"} 800.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="acme/tiny"} 200.0
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="acme/tiny"} 9.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="acme/tiny"} 4.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="acme/tiny"} 5.0
vllm:e2e_request_latency_seconds_count{model_name="acme/tiny"} 5.0
vllm:e2e_request_latency_seconds_sum{model_name="acme/tiny"} 3.5
"""

DEPRECATED = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="old"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="old"} 0.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="old"} 0.9
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{model_name="old"} 10.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{model_name="old"} 20.0
# TYPE vllm:gpu_prefix_cache_queries counter
vllm:gpu_prefix_cache_queries_total{model_name="old"} 100.0
# TYPE vllm:gpu_prefix_cache_hits counter
vllm:gpu_prefix_cache_hits_total{model_name="old"} 75.0
"""

NIM = """\
# TYPE num_requests_running gauge
num_requests_running{model_name="meta/llama"} 3.0
# TYPE num_requests_waiting gauge
num_requests_waiting{model_name="meta/llama"} 0.0
# TYPE gpu_cache_usage_perc gauge
gpu_cache_usage_perc{model_name="meta/llama"} 0.1
# TYPE prompt_tokens counter
prompt_tokens_total{model_name="meta/llama"} 50.0
# TYPE generation_tokens counter
generation_tokens_total{model_name="meta/llama"} 60.0
"""


def test_current_names_are_summed_over_engines_and_kv_is_the_fullest() -> None:
    sample = parse_metrics(CURRENT, at=10.0)
    assert sample.values["requests_running"] == 3.0
    assert sample.values["requests_waiting"] == 4.0
    assert sample.values["kv_cache_usage"] == 0.5
    assert sample.values["prompt_tokens"] == 1000.0  # _created is not a counter value
    assert sample.values["generation_tokens"] == 400.0
    assert sample.values["preemptions"] == 3.0
    assert sample.deprecated_names == ()
    figures = engine_metrics(sample)
    assert figures.kv_cache_usage_pct == 50.0
    assert figures.prefix_cache_hit_rate == 0.25  # since start: one sample only
    assert figures.prompt_tokens_per_s is None and figures.note == FIRST_SAMPLE_NOTE


def test_deprecated_names_are_understood_and_named() -> None:
    sample = parse_metrics(DEPRECATED, at=0.0)
    figures = engine_metrics(sample)
    assert figures.kv_cache_usage_pct == pytest.approx(90.0)
    assert figures.prefix_cache_hit_rate == 0.75
    assert set(figures.deprecated_names) == {"vllm:gpu_cache_usage_perc", "vllm:gpu_prefix_cache_queries_total",
                                             "vllm:gpu_prefix_cache_hits_total"}


def test_current_names_win_when_both_are_exported() -> None:
    both = CURRENT + '# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{engine="0"} 0.99\n'
    sample = parse_metrics(both, at=0.0)
    assert sample.values["kv_cache_usage"] == 0.5 and sample.deprecated_names == ()


def test_v0_hit_rate_gauge_is_a_last_resort() -> None:
    sample = parse_metrics("# TYPE vllm:gpu_prefix_cache_hit_rate gauge\nvllm:gpu_prefix_cache_hit_rate 0.4\n", 0.0)
    assert engine_metrics(sample).prefix_cache_hit_rate == 0.4


def test_nim_unprefixed_names() -> None:
    figures = engine_metrics(parse_metrics(NIM, at=0.0))
    assert figures.requests_running == 3.0 and figures.kv_cache_usage_pct == pytest.approx(10.0)
    assert figures.prompt_tokens_total == 50.0 and figures.generation_tokens_total == 60.0


def test_counters_without_type_lines_still_count() -> None:
    sample = parse_metrics("vllm:prompt_tokens_total 12\nvllm:num_requests_running 1\n", at=0.0)
    assert sample.values == {"prompt_tokens": 12.0, "requests_running": 1.0}


@pytest.mark.parametrize("garbage", [
    "<html><body>{{{ not prometheus }}}</body></html>",
    "this is not prometheus text {{{",
    "\x00\x01\x02garbage",
    "vllm:num_requests_running{engine=\"0\" 2.0",
    "{}",
    '{"object":"error","message":"Not Found"}',
])
def test_garbage_is_a_one_line_reason(garbage: str) -> None:
    with pytest.raises(MetricsUnreadable) as raised:
        parse_metrics(garbage, at=0.0)
    reason = str(raised.value)
    assert reason.startswith("not Prometheus text") and "\n" not in reason and len(reason) < 300


def test_text_without_vllm_names_is_an_empty_sample() -> None:
    sample = parse_metrics("python_gc_objects_collected_total 12\nprocess_open_fds 9\n", at=0.0)
    assert sample.values == {} and sample.series == 2


def test_non_finite_values_are_ignored() -> None:
    sample = parse_metrics("vllm:num_requests_running NaN\nvllm:num_requests_waiting +Inf\n", at=0.0)
    assert sample.values == {}


# --- rates ------------------------------------------------------------------------------------------------------


def _sample(at: float, **values: float) -> MetricsSample:
    return MetricsSample(at=at, values=values)


def test_rates_from_counters_between_two_samples() -> None:
    before = _sample(100.0, prompt_tokens=1000, generation_tokens=400, preemptions=3, prefix_queries=800,
                     prefix_hits=200)
    after = _sample(102.0, prompt_tokens=1500, generation_tokens=500, preemptions=4, prefix_queries=1000,
                    prefix_hits=350)
    figures = engine_metrics(after, before)
    assert figures.interval_s == 2.0 and figures.note is None
    assert figures.prompt_tokens_per_s == 250.0
    assert figures.generation_tokens_per_s == 50.0
    assert figures.preemptions_in_interval == 1.0
    assert figures.prefix_cache_hit_rate == 0.75  # over the interval, not since start (350/1000)
    doc = figures.to_dict()
    assert doc["prompt_tokens_per_s"] == 250 and doc["prompt_tokens_total"] == 1500


def test_a_counter_that_went_back_means_a_restart_not_a_negative_rate() -> None:
    figures = engine_metrics(_sample(5.0, prompt_tokens=10, generation_tokens=1),
                             _sample(3.0, prompt_tokens=900, generation_tokens=90))
    assert figures.prompt_tokens_per_s is None and figures.generation_tokens_per_s is None
    assert figures.note == RESET_NOTE and figures.prompt_tokens_total == 10


def test_no_rates_without_time_between_samples() -> None:
    figures = engine_metrics(_sample(5.0, prompt_tokens=10), _sample(5.0, prompt_tokens=5))
    assert figures.prompt_tokens_per_s is None and figures.interval_s is None


def test_idle_interval_falls_back_to_the_lifetime_hit_rate() -> None:
    figures = engine_metrics(_sample(2.0, prefix_queries=100, prefix_hits=30),
                             _sample(1.0, prefix_queries=100, prefix_hits=30))
    assert figures.prefix_cache_hit_rate == 0.3 and figures.prompt_tokens_per_s is None
