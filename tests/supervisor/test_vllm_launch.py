"""The catalogue's engine options become vLLM's flags and environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.catalogue import ModelEntry
from appliance.engines.options import VllmOptions
from appliance.supervisor.launch import LaunchError, worker_command, worker_environment
from appliance.supervisor.vllm_launch import REPO_VLLM_PYTHON, option_flags, vllm_python


def entry(**options: object) -> ModelEntry:
    return ModelEntry(slug="org/chat", modality="chat", engine="vllm", path=Path("/models/chat"),
                      context_window=8192, engine_options=options)


def test_the_command_serves_the_slug_on_the_socket_with_the_context_window() -> None:
    command = worker_command(entry(), Path("/run/chat.sock"))
    assert command[1:3] == ["-m", "vllm.entrypoints.launchers.api_server.entry"]  # not the deprecated one
    joined = " ".join(command)
    assert "--model /models/chat" in joined and "--served-model-name org/chat" in joined
    assert "--uds /run/chat.sock" in joined and "--max-model-len 8192" in joined


def test_vllm_schedules_by_priority_so_batch_lines_yield_to_live_requests() -> None:
    assert "--scheduling-policy priority" in " ".join(worker_command(entry(), Path("/run/chat.sock")))
    kept = " ".join(worker_command(entry(scheduling_policy="fcfs"), Path("/run/chat.sock")))
    assert "--scheduling-policy fcfs" in kept and "priority" not in kept


def test_options_map_onto_vllm_flags() -> None:
    flags = option_flags({
        "max_model_len": 4096, "dtype": "bfloat16", "gpu_memory_utilization": 0.85, "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2, "distributed_executor_backend": "ray", "quantization": "awq",
        "tool_call_parser": "hermes", "enforce_eager": True, "enable_prefix_caching": False,
        "extra_args": ["--max-num-seqs", "64"],
    })
    joined = " ".join(flags)
    for expected in ("--max-model-len 4096", "--dtype bfloat16", "--gpu-memory-utilization 0.85",
                     "--tensor-parallel-size 4", "--pipeline-parallel-size 2",
                     "--distributed-executor-backend ray", "--quantization awq",
                     "--enable-auto-tool-choice --tool-call-parser hermes", "--enforce-eager",
                     "--max-num-seqs 64"):
        assert expected in joined
    assert "prefix" not in joined  # false: vLLM's default stands


def test_the_catalogue_may_not_override_what_the_appliance_sets() -> None:
    with pytest.raises(LaunchError, match="uds"):
        worker_command(entry(uds="/elsewhere.sock"), Path("/run/chat.sock"))


def test_cpu_options_are_environment_variables() -> None:
    env = worker_environment(entry(cpu_kvcache_space_gb=2))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert "--cpu-kvcache-space-gb" not in worker_command(entry(cpu_kvcache_space_gb=2), Path("/s"))


def test_the_interpreter_is_the_entrys_then_the_setting_then_the_repos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_VLLM_PYTHON", raising=False)
    pinned = entry().model_copy(update={"python": Path("/opt/vllm/bin/python")})
    assert vllm_python(pinned) == "/opt/vllm/bin/python"
    monkeypatch.setenv("APPLIANCE_VLLM_PYTHON", "/srv/venv-vllm/bin/python")
    assert vllm_python(entry()) == "/srv/venv-vllm/bin/python"
    monkeypatch.delenv("APPLIANCE_VLLM_PYTHON")
    if REPO_VLLM_PYTHON.exists():
        assert vllm_python(entry()) == str(REPO_VLLM_PYTHON)


def test_the_nice_value_of_its_busy_pollers_is_the_appliances_option_not_a_vllm_flag() -> None:
    command = " ".join(worker_command(entry(busy_poll_nice=10), Path("/s")))
    assert "nice" not in command and "busy" not in command
    assert VllmOptions.model_validate({}).busy_poll_nice == 19
    with pytest.raises(ValidationError):
        VllmOptions.model_validate({"busy_poll_nice": 20})  # nice values end at 19


def test_media_limits_and_processor_overrides_become_json_flags() -> None:
    joined = " ".join(option_flags({"limit_mm_per_prompt": {"image": 4, "audio": 2, "video": 0},
                                    "mm_processor_kwargs": {"max_pixels": 1003520}}))
    assert '--limit-mm-per-prompt {"image": 4, "audio": 2, "video": 0}' in joined
    assert '--mm-processor-kwargs {"max_pixels": 1003520}' in joined
    with pytest.raises(ValidationError):
        VllmOptions.model_validate({"limit_mm_per_prompt": {"image": "many"}})


def test_vllm_fetches_no_media_url_unless_the_catalogue_names_hosts() -> None:
    command = worker_command(entry(), Path("/s"))
    [host] = command[command.index("--allowed-media-domains") + 1:][:1]
    assert host.endswith(".invalid")  # a name that cannot resolve: every http(s) media URL is refused
    named = " ".join(worker_command(entry(allowed_media_domains=["images.lan"]), Path("/s")))
    assert "--allowed-media-domains images.lan" in named and ".invalid" not in named
