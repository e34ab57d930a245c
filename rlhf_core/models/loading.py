"""Models and tokenizers: the shipped GPT-2-architecture base models, and real GPT-2 where it can be had.

    model, tokenizer = load_base("tiny")        # ~1M parameters, shipped in data/base-tiny
    model, tokenizer = load_base("small")       # ~4M parameters, shipped in data/base-small
    model, tokenizer = load_base("gpt2")        # the real 124M GPT-2: needs the Hugging Face hub or its cache
    model, tokenizer = load_base("path/to/dir") # anything save_pretrained wrote

Every model is a transformers `GPT2LMHeadModel`; every tokenizer pads with its own pad token (never EOS) on
the left, so a batch of prompts ends where the response begins ("N implementation details of RLHF").
"""
from __future__ import annotations

import os
from pathlib import Path

from ..common.files import atomic_folder
from ..common.paths import DATA_DIR

EOS_TOKEN = "<|endoftext|>"  # also BOS: GPT-2's convention
PAD_TOKEN = "<|pad|>"
SHIPPED = {"tiny": DATA_DIR / "base-tiny", "small": DATA_DIR / "base-small"}


def available_cores() -> int:
    """CPU cores this process may run on: its affinity set, capped by a cgroup CPU quota (containers, CI runners)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))  # ceil(quota / period)
    except (OSError, ValueError):  # no cgroup v2 file, or not Linux
        pass
    return cores


def set_threads(threads: int | None = None) -> int:
    """Fix torch's thread count for the course, once: `threads`, else $RLHF_THREADS, else `available_cores()`.

    Importing rlhf_core calls this, so every notebook and script starts the same way. Why not torch's default:
    torch counts the host's physical cores even where a container or a shared machine grants fewer, and more
    threads than cores make our small models 5-10x slower; and a thread count is part of what makes a run
    reproducible (reductions split across threads add in another order, and sampling amplifies the last digit).
    The same seed on the same machine gives the same numbers. Returns the count set.
    """
    import torch

    if threads is None:
        setting = os.environ.get("RLHF_THREADS", "").strip()
        if setting and not (setting.isdigit() and int(setting) > 0):
            raise ValueError(f"RLHF_THREADS must be a positive whole number of threads, got {setting!r}; "
                             "unset it to use every available core.")
        threads = int(setting) if setting else available_cores()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def default_device():
    """The device the course puts its models on, decided here and nowhere else: $RLHF_DEVICE if set ("cpu",
    "cuda", "cuda:1", or "auto"), else "auto" — the GPU when torch sees one, else the CPU.

    Every stage loads or builds its models on this device (`load_base`, the reward and value heads, pretraining),
    and everything after follows the model it feeds: inputs move to `model_device(model)` where they enter a model,
    so sampling, scoring and the losses run where the weights are. Random numbers always come from CPU generators,
    so a seed draws the same uniforms on either device. The course is sized for CPUs: expect a one-million-parameter
    model to gain little on a GPU, whose kernels it is too small to fill, and larger bodies to gain (benchmarks/gpu.py
    measures both where there is a GPU).
    """
    import torch

    setting = os.environ.get("RLHF_DEVICE", "").strip().lower() or "auto"
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(setting)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"RLHF_DEVICE={setting!r} is not a device the course runs on; use 'cpu', 'cuda' or "
                         "'cuda:N', or unset it to use the GPU when there is one")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ValueError(f"RLHF_DEVICE={setting!r} asks for a GPU, but torch ({torch.__version__}, {build}) sees "
                         "none; unset RLHF_DEVICE or set it to 'cpu'")
    return device


def model_device(model):
    """The device of a model's weights; the CPU for one without any (`heads.LabelerReward`)."""
    import torch

    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def on_model_device(model, *tensors):
    """The tensors moved to `model_device(model)`, as a tuple: inputs follow the model they enter."""
    device = model_device(model)
    return tuple(t.to(device) for t in tensors)


def build_tokenizer(texts, vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer (GPT-2's kind) on `texts`, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN, PAD_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(bpe)


def wrap_tokenizer(bpe):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN, padding_side="left", model_max_length=256)


def gpt2_config(tokenizer, n_layer: int = 4, n_embd: int = 128, n_head: int = 4, n_positions: int = 256,
                dropout: float = 0.0):
    """A small GPT2Config with the special token ids set explicitly (transformers 5 needs them)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def new_model(config, attn_implementation: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


class OfflineError(RuntimeError):
    """A model had to come from the Hugging Face hub, and the hub could not be reached."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a connection to the Hugging Face hub (HF_ENDPOINT, if set)? False when offline."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str, error: Exception) -> str:
    return (f"Could not load {name!r}: the Hugging Face hub is not reachable from here and {name!r} is not in "
            f"the local cache ({type(error).__name__}). Use the course's shipped models instead: "
            f"load_base('tiny') or load_base('small') — or, on a machine with internet, run "
            f"load_base({name!r}) once to fill the cache, or pass a local folder that save_pretrained wrote.")


def load_base(name: str = "tiny", attn_implementation: str = "sdpa", device=None):
    """(model, tokenizer) for "tiny", "small", a local folder, or a hub name such as "gpt2"/"distilgpt2".

    The model comes back in eval mode (switch to train() to train it), on `device` (None: `default_device()`,
    the GPU when there is one). A hub name that cannot be fetched
    raises OfflineError with a message that says how to use the shipped models instead.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = SHIPPED.get(name, name)
    is_local = Path(source).exists()
    if name in SHIPPED and not is_local:
        raise FileNotFoundError(f"The shipped base model {name!r} is missing from {source}. "
                                f"Restore it with `git checkout -- {Path(source).relative_to(DATA_DIR.parent)}` "
                                f"or rebuild it with `python -m rlhf_core.stages.pretrain --model {name}`.")
    def fetch(local_files_only: bool):
        kwargs = {"local_files_only": local_files_only}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, attn_implementation=attn_implementation,
                                                     dtype=torch.float32, **kwargs)
        return model, tokenizer

    if is_local and not (Path(source) / "config.json").exists():
        raise FileNotFoundError(f"{source} is not a complete checkpoint: it has no config.json. Point load_base "
                                "at a folder that save_pretrained wrote (model and tokenizer).")
    try:  # a local folder or the Hugging Face cache first: no network needed
        model, tokenizer = fetch(local_files_only=True)
    except (OSError, ValueError) as error:  # missing files, cache misses; a folder without a tokenizer
        if is_local:
            raise FileNotFoundError(f"{source} is not a complete checkpoint ({error}). Point load_base at a "
                                    "folder that save_pretrained wrote.") from None
        if not hub_reachable():  # fail at once with advice, rather than after a minute of retries
            raise OfflineError(_offline_message(name, error)) from None
        try:
            model, tokenizer = fetch(local_files_only=False)
        except OSError as error:
            raise OfflineError(_offline_message(name, error)) from None
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # GPT-2 ships without a pad token; reusing EOS would mask real EOS tokens, so add a distinct one.
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "left"
    use_fused_gelu(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device or default_device()).eval(), tokenizer


def use_fused_gelu(model) -> None:
    """Swap GPT-2's "gelu_new" for "gelu_pytorch_tanh": the same function, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))),
    computed by one fused kernel instead of six elementwise ones (a few % off every pass on a small model).
    Models built from this config later (reward and value heads, checkpoints) inherit the fused one."""
    from transformers.activations import ACT2FN

    if getattr(model.config, "activation_function", None) != "gelu_new" or not hasattr(model, "transformer"):
        return
    model.config.activation_function = "gelu_pytorch_tanh"
    for block in model.transformer.h:
        block.mlp.act = ACT2FN["gelu_pytorch_tanh"]


def save_checkpoint(model, tokenizer, out_dir: str | Path, extra=None) -> Path:
    """save_pretrained (safetensors) for model and tokenizer, atomically (`common.files.atomic_folder`): an interrupted
    save leaves the previous checkpoint at `out_dir` as it was. `extra(folder)`, if given, writes more files into
    the new checkpoint before it takes `out_dir`'s place (pretraining's loss curve): all of it or none."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        if extra is not None:
            extra(folder)
    return out_dir


