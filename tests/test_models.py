"""Tokenizer and base models: the shipped checkpoints, local round trips, and the offline message."""
import json
import os

import pytest
import torch

from rlhf_core import OfflineError, load_base, save_checkpoint
from rlhf_core.models.loading import SHIPPED, build_tokenizer, count_parameters, gpt2_config, new_model
from rlhf_core.common.paths import DATA_DIR


@pytest.fixture(scope="module")
def tiny():
    return load_base("tiny")


def test_tokenizer_has_its_own_pad_token_and_pads_left(tiny):
    _, tok = tiny
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.eos_token == tok.bos_token == "<|endoftext|>"
    batch = tok(["Human: Hi?\nAssistant:", "Human: What colour is a banana?\nAssistant:"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    assert batch["input_ids"][1][-1] == batch["input_ids"][0][-1]  # both end with the same "Assistant:" token


def test_tokenizer_round_trips_text_and_knows_the_worlds_words(tiny):
    _, tok = tiny
    text = "Human: What is the capital of Mexico?\nAssistant: The capital of Mexico is Mexico City."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) <= 24  # (20 words and marks) whole words are single tokens: a small, fast vocabulary
    assert len(tok) <= 1100


def test_prompt_then_response_tokenises_like_the_whole(tiny):
    _, tok = tiny
    prompt, response = "Human: What does a cow say?\nAssistant:", " A cow says moo."
    whole = tok(prompt + response, add_special_tokens=False)["input_ids"]
    parts = tok(prompt, add_special_tokens=False)["input_ids"] + tok(response, add_special_tokens=False)["input_ids"]
    assert whole == parts


@pytest.mark.parametrize("name, low, high", [("tiny", 0.8e6, 1.3e6), ("small", 4e6, 6e6)])
def test_shipped_models_sizes_and_files(name, low, high):
    model, tok = load_base(name)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert low <= count_parameters(model) <= high
    assert not model.training
    files = {p.name for p in SHIPPED[name].iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files and "pytorch_model.bin" not in files
    assert (SHIPPED[name] / "model.safetensors").stat().st_size <= 20_000_000
    log = json.loads((SHIPPED[name] / "pretrain_log.json").read_text())
    assert log["heldout_loss"][-1] < log["heldout_loss"][0] - 1.0, "pretraining did not learn"


def test_small_is_at_least_four_times_tiny():
    assert count_parameters(load_base("small")[0]) >= 4 * count_parameters(load_base("tiny")[0])


def test_base_model_is_fluent_in_the_chat_format(tiny):
    model, tok = tiny
    prompt = "Human: What colour is a banana?\nAssistant:"
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids)
    next_token = tok.decode(out.logits[0, -1].argmax())
    assert next_token.startswith(" "), next_token  # it answers with a word, not garbage


def test_local_round_trip_gives_identical_outputs(tiny, tmp_path):
    model, tok = tiny
    save_checkpoint(model, tok, tmp_path / "copy")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp folder left behind"
    model2, tok2 = load_base(str(tmp_path / "copy"))
    ids = tok(["Human: What does a dog say?\nAssistant:"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, model2(**ids).logits)
    assert tok2.pad_token_id == tok.pad_token_id and tok2.padding_side == "left"


def test_a_gpt2_style_folder_without_pad_token_gets_a_distinct_one(tmp_path):
    # Real GPT-2 ships with no pad token; load_base adds one instead of reusing EOS.
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(["Human: What does a dog say?\nAssistant: A dog says woof."] * 10, vocab_size=300)
    tok = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>")
    assert tok.pad_token is None
    config = gpt2_config(tok, n_layer=1, n_embd=32, n_head=2)
    config.pad_token_id = None
    model = new_model(config)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model2, tok2 = load_base(str(tmp_path))
    assert tok2.pad_token_id is not None and tok2.pad_token_id != tok2.eos_token_id
    assert model2.get_input_embeddings().num_embeddings >= len(tok2)
    assert tok2.padding_side == "left" and model2.config.pad_token_id == tok2.pad_token_id


def test_offline_hub_name_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")      # as on a machine without internet, without waiting
    with pytest.raises(OfflineError, match=r"load_base\('tiny'\)"):
        load_base("distilgpt2")


def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_base(str(tmp_path / "empty"))


def test_shipped_models_live_in_data():
    assert SHIPPED["tiny"].parent == DATA_DIR


def test_set_threads_takes_the_argument_then_the_environment_then_the_cores(monkeypatch):
    from rlhf_core.models.loading import available_cores, set_threads

    before = torch.get_num_threads()
    try:
        assert 1 <= available_cores() <= (os.cpu_count() or 1)
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("RLHF_THREADS", "1")
        assert set_threads() == 1
        monkeypatch.delenv("RLHF_THREADS")
        assert set_threads() == available_cores() == torch.get_num_threads()
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("RLHF_THREADS", bad)
            with pytest.raises(ValueError, match="RLHF_THREADS"):
                set_threads()
        with pytest.raises(ValueError, match="at least 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_default_device_is_the_gpu_when_there_is_one_then_whatever_rlhf_device_says(monkeypatch):
    from rlhf_core.models.loading import default_device

    monkeypatch.delenv("RLHF_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    for setting, device in (("cpu", "cpu"), (" CUDA ", "cuda"), ("cuda:1", "cuda:1"), ("auto", "cuda"), ("", "cuda")):
        monkeypatch.setenv("RLHF_DEVICE", setting)
        assert default_device() == torch.device(device), setting
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RLHF_DEVICE")
    assert default_device() == torch.device("cpu")
    for bad in ("gpu", "mps", "cuda:x", "meta"):
        monkeypatch.setenv("RLHF_DEVICE", bad)
        with pytest.raises(ValueError, match=r"RLHF_DEVICE=.*use 'cpu', 'cuda'"):
            default_device()
    monkeypatch.setenv("RLHF_DEVICE", "cuda")  # asked for, but there is no GPU
    with pytest.raises(ValueError, match="sees none; unset RLHF_DEVICE or set it to 'cpu'"):
        default_device()


def test_models_are_loaded_where_default_device_says(monkeypatch, tmp_path):
    import rlhf_core.models.heads
    import rlhf_core.models.loading
    from rlhf_core.models.heads import LabelerReward, RewardModel
    from rlhf_core.models.loading import model_device, on_model_device

    model, tokenizer = load_base("tiny")
    assert model_device(model) == torch.device("cpu")  # no GPU here
    RewardModel.from_causal_lm(model).save_pretrained(tmp_path / "rm")
    meta = lambda: torch.device("meta")  # a device other than the CPU that needs no hardware  # noqa: E731
    monkeypatch.setattr(rlhf_core.models.loading, "default_device", meta)
    monkeypatch.setattr(rlhf_core.models.heads, "default_device", meta)
    on_meta = load_base("tiny")[0]
    assert model_device(on_meta).type == "meta"
    ids, mask = on_model_device(on_meta, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))
    assert ids.device.type == mask.device.type == "meta" and ids.dtype == torch.long  # inputs follow the weights
    assert model_device(load_base("tiny", device="cpu")[0]).type == "cpu"  # an explicit device wins
    assert model_device(RewardModel.from_pretrained(tmp_path / "rm")).type == "meta"
    assert model_device(LabelerReward(tokenizer)) == torch.device("cpu")  # no weights: the CPU


def test_only_models_loading_decides_the_device():
    """One place picks the device (models.loading.default_device); everything else follows the model's weights."""
    import re

    package = DATA_DIR.parent / "rlhf_core"
    deciding = re.compile(r"torch\.cuda|[\"']cuda[\"':]|environ[^\n]*RLHF_DEVICE")  # asks for a GPU, reads the setting
    home = package / "models" / "loading.py"
    deciders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                if path != home and deciding.search(path.read_text(encoding="utf-8"))]
    assert not deciders, (f"{deciders} choose a device: ask models.loading.default_device() or model_device(model) "
                          "instead")
    assert deciding.search(home.read_text(encoding="utf-8"))  # the pattern finds the one place
