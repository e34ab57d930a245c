"""Tests for rlhf_core.models.heads: where the reward is read, bias normalisation, value alignment, checkpoints."""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from rlhf_core.models.loading import build_tokenizer

from rlhf_core.models.heads import HEAD_FILE, RewardModel, ValueModel, last_token_index, normalise_reward, score_texts
from rlhf_core.models.sequences import concat_query_response, tokenize_prompts, tokenize_responses

SENTENCES = [
    "Human: What colour is a banana?\nAssistant: A banana is yellow.",
    "Human: Name a fruit.\nAssistant: An apple is a fruit.",
    "Human: How many legs does a cat have?\nAssistant: A cat has four legs.",
    "Human: Say hello.\nAssistant: Hello there!",
] * 4
PROMPTS = ["Human: What colour is a banana?\nAssistant:", "Human: Hi\nAssistant:",
           "Human: How many legs does a cat have?\nAssistant:"]
RESPONSES = [" A banana is yellow.", " Hello", " A cat has four legs, and a dog has four legs too."]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on a few sentences, the course's recipe: pad is its own token, eos = bos."""
    return build_tokenizer(SENTENCES, vocab_size=350)


@pytest.fixture(scope="module")
def lm(tokenizer):
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=len(tokenizer), n_positions=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()


@pytest.fixture
def reward_model(lm):
    torch.manual_seed(1)
    rm = RewardModel.from_causal_lm(lm).eval()
    with torch.no_grad():  # a head large enough that scores differ visibly between sequences
        rm.head.weight.normal_(std=1.0)
        rm.head.bias.fill_(0.3)
    return rm


def batch(tokenizer, prompts=PROMPTS, responses=RESPONSES):
    query_ids, query_mask = tokenize_prompts(tokenizer, prompts)
    response_ids, response_mask = tokenize_responses(tokenizer, responses)
    return query_ids, query_mask, response_ids, response_mask


def test_last_token_index():
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [4, 5, 2]


def test_reward_is_read_at_the_last_real_token(reward_model, tokenizer):
    """Reference: each row run alone without padding, the head applied to its last hidden state."""
    input_ids, attention_mask = concat_query_response(*batch(tokenizer))
    scores = reward_model(input_ids, attention_mask)
    assert scores.shape == (len(PROMPTS),)
    for row in range(len(PROMPTS)):
        ids = input_ids[row][attention_mask[row]].unsqueeze(0)  # (1, n) the real tokens only
        hidden = reward_model.backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        expected = reward_model.head(hidden[0, -1]).squeeze() - reward_model.bias
        torch.testing.assert_close(scores[row], expected, atol=1e-5, rtol=1e-5)
        assert ids[0, -1] == tokenizer.eos_token_id  # the last real token is the response's EOS


def test_reward_ignores_padding_tokens_and_padding_length(reward_model, tokenizer):
    input_ids, attention_mask = concat_query_response(*batch(tokenizer))
    scores = reward_model(input_ids, attention_mask)
    garbage = input_ids.masked_fill(~attention_mask, 7)  # other token ids under the padding
    torch.testing.assert_close(reward_model(garbage, attention_mask), scores)
    B = input_ids.shape[0]
    wider_ids = torch.cat([torch.full((B, 3), 5), input_ids, torch.full((B, 4), 9)], dim=1)  # more pad both sides
    wider_mask = torch.cat([torch.zeros(B, 3, dtype=torch.bool), attention_mask, torch.zeros(B, 4, dtype=torch.bool)], 1)
    torch.testing.assert_close(reward_model(wider_ids, wider_mask), scores, atol=1e-5, rtol=1e-5)


def test_score_ranking_reads_each_prompt_once_and_matches_scoring_each_answer_alone(reward_model, tokenizer):
    """The reference: every (prompt, answer) joined, unpadded, scored alone by forward. K = 3 answers a prompt, of
    mixed lengths (an empty one is its EOS alone); rows=2 splits them into several chunks."""
    answers = [[" A banana is yellow.", "", " Yellow, and a cat has four legs."],
               [" Hello", " Hello there!", " Hi"],
               [" A cat has four legs.", " Four", " A dog has four legs, and a cat has four legs too."]]
    query_ids, query_mask, response_ids, response_mask = batch(
        tokenizer, PROMPTS, [a for per_prompt in answers for a in per_prompt])
    weights = torch.randn(9, generator=torch.Generator().manual_seed(0))  # a loss that weighs every score differently

    reward_model.zero_grad()
    shared = reward_model.score_ranking(query_ids, query_mask, response_ids, response_mask, rows=2)  # (9,)
    (weights * shared).sum().backward()
    shared_grads = [p.grad.clone() for p in reward_model.parameters()]

    reward_model.zero_grad()
    alone = []
    for row in range(9):
        ids = torch.cat([query_ids[row // 3][query_mask[row // 3]], response_ids[row][response_mask[row]]])[None]
        alone.append(reward_model(ids, torch.ones_like(ids, dtype=torch.bool))[0])
    (weights * torch.stack(alone)).sum().backward()

    torch.testing.assert_close(shared, torch.stack(alone).detach(), atol=1e-5, rtol=1e-5)
    for p, g in zip(reward_model.parameters(), shared_grads):
        # float32 sums taken in another order (other batch shapes) differ by ~1e-4 of a gradient's largest entry
        torch.testing.assert_close(g, p.grad, atol=1e-4 * p.grad.abs().max().item(), rtol=1e-4)
    with pytest.raises(ValueError, match="same number of answers"):
        reward_model.score_ranking(query_ids, query_mask, response_ids[:8], response_mask[:8])


def test_from_causal_lm_copies_the_body(lm, tokenizer):
    rm = RewardModel.from_causal_lm(lm).eval()
    input_ids, attention_mask = concat_query_response(*batch(tokenizer))
    ones = torch.ones_like(input_ids)
    torch.testing.assert_close(rm.backbone(input_ids=input_ids, attention_mask=ones).last_hidden_state,
                               lm.transformer(input_ids=input_ids, attention_mask=ones).last_hidden_state)
    assert rm.backbone.wte.weight.data_ptr() != lm.transformer.wte.weight.data_ptr()  # a copy, not shared
    assert rm.head.weight.std() < 0.3 and rm.head.bias.abs().max() == 0 and rm.bias == 0  # a small fresh head


def test_normalise_reward_gives_mean_zero(reward_model, tokenizer):
    before = score_texts(reward_model, tokenizer, PROMPTS, RESPONSES)
    assert before.mean().abs() > 1e-3
    bias = normalise_reward(reward_model, tokenizer, PROMPTS, RESPONSES, batch_size=2)  # batches of 2 and 1
    after = score_texts(reward_model, tokenizer, PROMPTS, RESPONSES)
    assert abs(after.mean()) < 1e-5
    torch.testing.assert_close(after, before - before.mean(), atol=1e-5, rtol=1e-5)  # differences kept
    assert bias == pytest.approx(float(before.mean()), abs=1e-5)
    normalise_reward(reward_model, tokenizer, PROMPTS, RESPONSES)  # normalising again changes nothing
    torch.testing.assert_close(score_texts(reward_model, tokenizer, PROMPTS, RESPONSES), after, atol=1e-5, rtol=1e-5)


def test_score_texts_matches_the_generated_layout(reward_model, tokenizer):
    """Prompt tokens, then response tokens, then EOS: the layout `generate` produces."""
    scores = score_texts(reward_model, tokenizer, PROMPTS, RESPONSES)
    for row, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        ids = (tokenizer(prompt, add_special_tokens=False)["input_ids"]
               + tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        ids = torch.tensor([ids])
        torch.testing.assert_close(scores[row], reward_model(ids, torch.ones_like(ids))[0], atol=1e-5, rtol=1e-5)


def test_value_of_response_token_t_is_read_before_it(reward_model, tokenizer):
    """V for token t is the value of the state x + y_<t: the last position of that prefix run alone."""
    value_model = ValueModel.from_reward_model(reward_model).eval()
    query_ids, query_mask, response_ids, response_mask = batch(tokenizer)
    values = value_model.response_values(query_ids, query_mask, response_ids, response_mask)
    assert values.shape == response_ids.shape and (values[~response_mask] == 0).all()
    for row in range(len(PROMPTS)):
        prompt = query_ids[row][query_mask[row]]
        for t in range(int(response_mask[row].sum())):
            prefix = torch.cat([prompt, response_ids[row, :t]]).unsqueeze(0)  # (1, p + t)
            expected = value_model(prefix, torch.ones_like(prefix))[0, -1]
            torch.testing.assert_close(values[row, t], expected, atol=1e-5, rtol=1e-5)


def test_value_model_starts_as_the_normalised_reward_model(reward_model, tokenizer):
    normalise_reward(reward_model, tokenizer, PROMPTS, RESPONSES)
    assert reward_model.bias != 0
    value_model = ValueModel.from_reward_model(reward_model).eval()
    input_ids, attention_mask = concat_query_response(*batch(tokenizer))
    values = value_model(input_ids, attention_mask)  # (B, L)
    at_last = values.gather(1, last_token_index(attention_mask).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(at_last, reward_model(input_ids, attention_mask), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # a copy: training the critic leaves the reward model alone
        value_model.head.weight.add_(1.0)
    assert not torch.equal(value_model.head.weight, reward_model.head.weight)


@pytest.mark.parametrize("cls", [RewardModel, ValueModel])
def test_save_and_load_round_trip(cls, reward_model, tokenizer, tmp_path):
    reward_model.bias.fill_(0.25)
    model = reward_model if cls is RewardModel else ValueModel.from_reward_model(reward_model).eval()
    input_ids, attention_mask = concat_query_response(*batch(tokenizer))
    expected = model(input_ids, attention_mask)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    model.save_pretrained(directory)  # overwriting a checkpoint works ...
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # ... and leaves no temporary directories
    assert {"config.json", "model.safetensors", HEAD_FILE} <= set(os.listdir(directory))
    loaded = cls.from_pretrained(directory)
    assert not loaded.training
    assert torch.equal(loaded(input_ids, attention_mask), expected)
    if cls is RewardModel:
        assert loaded.bias == 0.25


def test_missing_checkpoint_says_what_to_do(reward_model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)config\.json.*notebook"):
        RewardModel.from_pretrained(tmp_path / "nowhere")
    reward_model.save_pretrained(tmp_path / "rm")
    os.remove(tmp_path / "rm" / HEAD_FILE)
    with pytest.raises(FileNotFoundError, match="head.safetensors"):
        RewardModel.from_pretrained(tmp_path / "rm")


def test_loading_the_wrong_kind_or_replacing_other_files_fails(reward_model, tmp_path):
    reward_model.save_pretrained(tmp_path / "rm")
    with pytest.raises(ValueError, match="RewardModel"):
        ValueModel.from_pretrained(tmp_path / "rm")
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing"):
        reward_model.save_pretrained(tmp_path)  # a directory that is not a checkpoint is never replaced
    assert (tmp_path / "notes.txt").exists()


def test_labeler_reward_is_the_gold_score_with_demonstrations_at_zero():
    from rlhf_core import SimulatedLabeler, load_base
    from rlhf_core.models.heads import LabelerReward
    from rlhf_core.world.tasks import format_prompt

    _, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?")] * 3 + [format_prompt("Count from 3 to 6.")]
    responses = [" A banana is yellow.", " A banana is blue.", " You idiot.\nHuman: more", " 3, 4, 5, 6."]
    reward = LabelerReward(tok, scale=2.0)
    query_ids, query_mask = tokenize_prompts(tok, prompts)
    response_ids, response_mask = tokenize_responses(tok, responses)
    scores = reward(*concat_query_response(query_ids, query_mask, response_ids, response_mask))
    gold = [SimulatedLabeler().score(p, r) for p, r in zip(prompts, responses)]
    assert scores.tolist() == pytest.approx([(g - 10) / 2 for g in gold])
    assert scores[0] == 0 and scores[1] < 0, "a demonstration-quality answer scores 0, a false fact less"
    with pytest.raises(ValueError, match="needs a chat prompt"):
        reward(*tokenize_prompts(tok, ["no chat turn here"]))
