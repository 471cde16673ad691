"""A stalled engine is told from a busy one by its work counters: requests held and none of them growing."""

from __future__ import annotations

import time

from appliance.supervisor.local_backend import _counter, _Progress

METRICS = b"""# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 120.0
vllm:generation_tokens_total{engine="1",model_name="m"} 30.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
vllm:prompt_tokens_total{engine="0",model_name="m"} 44.0
"""


def test_a_counter_is_summed_over_its_series_and_nothing_else() -> None:
    assert _counter(METRICS, "vllm:generation_tokens_total") == 150.0
    assert _counter(METRICS, "vllm:prompt_tokens_total") == 44.0
    assert _counter(METRICS, "vllm:absent_total") == 0.0


def test_stalled_once_the_counters_stand_still_for_the_stall_time() -> None:
    progress = _Progress(("vllm:generation_tokens_total", "vllm:prompt_tokens_total"), stall_s=0.2)
    assert not progress.stalled(METRICS)  # the first look: nothing to compare with
    assert not progress.stalled(METRICS)
    time.sleep(0.3)
    assert progress.stalled(METRICS)
    assert not progress.stalled(METRICS.replace(b"} 44.0", b"} 45.0"))  # a token processed: working again
    progress.idle()  # no request in flight: nothing can be stalled, and the clock starts again
    assert not progress.stalled(METRICS)
