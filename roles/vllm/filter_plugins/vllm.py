"""The vllm role's input checks, the served release's weights, and the server's command
line for each engine (vLLM on GPUs; llama.cpp, the lab's CPU stand-in)."""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9.:/_-]*@sha256:[0-9a-f]{64}$")
TITLE = "org.opencontainers.image.title"


def vllm_problems(model: Any, engine: str, image: str, gpus: list[str]) -> list[str]:
    """One sentence per problem with this host's input, before anything changes."""
    out = []
    if engine not in ("vllm", "llamacpp"):
        out.append(f"vllm_engine is {engine!r}; it is vllm or llamacpp (the lab's stand-in)")
    if not IMAGE.match(str(image or "")):
        out.append(f"vllm_image {image!r} is not REGISTRY/NAME@sha256:DIGEST (is the server "
                   "image in the served release?)")
    if not isinstance(model, dict):
        return [*out, "vllm_model must be a mapping (served, pack, version, file)"]
    for key in ("served", "pack", "version"):
        if not NAME.match(str(model.get(key) or "")):
            out.append(f"vllm_model.{key} is {model.get(key)!r}: letters, digits, '.', '_' "
                       "or '-'")
    if engine == "llamacpp" and not NAME.match(str(model.get("file") or "")):
        out.append("vllm_model.file must name the GGUF file the llamacpp engine loads")
    if engine == "vllm" and not gpus:
        out.append("this host has no NVIDIA GPU (no PCI display device of vendor 0x10de), "
                   "and vLLM needs one: fit a GPU or take the host out of chat_gpu and "
                   "completion_gpu")
    return out


def vllm_release_files(index: dict[str, Any], manifests: dict[str, Any], pack: str,
                       version: str) -> list[dict[str, Any]]:
    """The weights files of model artifact PACK at VERSION in the release: file, sha256,
    size. ``manifests`` maps each model manifest digest to the manifest."""
    seen = []
    for m in index.get("manifests", []):
        ann = m.get("annotations") or {}
        if ann.get("dev.airlock.kind") != "model":
            continue
        name, ver = ann.get("dev.airlock.name"), ann.get("org.opencontainers.image.version")
        seen.append(f"{name} {ver}")
        if name == pack and str(ver) == str(version):
            manifest = manifests.get(m["digest"])
            if manifest is None:
                raise AnsibleFilterError(f"model {pack} {version}: its manifest was not read")
            return [{"file": layer["annotations"][TITLE],
                     "sha256": layer["digest"].split(":", 1)[1], "size": layer["size"]}
                    for layer in manifest.get("layers", [])]
    raise AnsibleFilterError(
        f"the served release carries no model {pack} {version} (it has: "
        f"{', '.join(seen) or 'no models'}); add it to the bundle spec's models and import "
        "the bundle, or change airlock_ai_weights")


def vllm_model_manifests(index: dict[str, Any]) -> list[str]:
    """The manifest digests of the release's model artifacts."""
    return [m["digest"] for m in index.get("manifests", [])
            if (m.get("annotations") or {}).get("dev.airlock.kind") == "model"]


def vllm_tensor_parallel(setting: Any, gpus: list[str]) -> int:
    """auto: every GPU, down to a power of two (vLLM splits attention heads evenly)."""
    if str(setting) != "auto":
        try:
            n = int(setting)
        except (TypeError, ValueError):
            raise AnsibleFilterError(f"vllm_tensor_parallel_size is {setting!r}: a number "
                                     "or auto") from None
        if n < 1 or n > max(len(gpus), 1):
            raise AnsibleFilterError(f"vllm_tensor_parallel_size {n} needs {n} GPUs; this "
                                     f"host has {len(gpus)}")
        return n
    n = 1
    while n * 2 <= len(gpus):
        n *= 2
    return n


def vllm_args(model: dict[str, Any], engine: str, address: str, port: int,
              options: dict[str, Any]) -> list[str]:
    """The server's arguments; the weights are mounted at /models/PACK."""
    if engine == "llamacpp":
        return ["--model", f"/models/{model['pack']}/{model['file']}",
                "--model_alias", model["served"], "--host", address, "--port", str(port),
                "--n_ctx", str(options["n_ctx"]), "--n_threads", str(options["threads"]),
                "--n_threads_batch", str(options["threads"]),
                *[str(a) for a in options.get("extra", [])]]
    return ["--model", f"/models/{model['pack']}", "--served-model-name", model["served"],
            "--host", address, "--port", str(port),
            "--tensor-parallel-size", str(options["tp"]),
            "--gpu-memory-utilization", str(options["gpu_memory_utilization"]),
            "--max-model-len", str(options["max_model_len"]),
            *[str(a) for a in options.get("extra", [])]]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_problems": vllm_problems, "vllm_release_files": vllm_release_files,
                "vllm_model_manifests": vllm_model_manifests,
                "vllm_tensor_parallel": vllm_tensor_parallel, "vllm_args": vllm_args}
