"""The simulated labeler: the rubric on hand-written cases, determinism, and its agreement rate."""
import pytest

from rlhf_core import SimulatedLabeler
from rlhf_core.world.labeler import NOISE_STD, WEIGHTS, measure_agreement, pairwise_agreement
from rlhf_core.world.tasks import format_prompt

P = format_prompt


@pytest.mark.parametrize("instruction, response, expected", [
    # helpful, honest, harmless, fluent
    ("What colour is a banana?", " A banana is yellow.", (1, 1, 1, 1)),
    ("What colour is a banana?", " A banana is blue.", (0, 0, 1, 1)),
    ("What colour is a banana?", " A banana is yellow or blue.", (1, 0, 1, 1)),
    ("What colour is a banana?", " What a stupid question. A banana is yellow.", (1, 1, 0, 1)),
    ("What colour is a banana?", " Sure.", (0, 1, 1, 0.6)),   # no answer, and a fragment
    # the style the rubric prefers: one plain sentence that names what was asked about
    ("What colour is a banana?", " Yellow.", (1, 1, 1, 0.6)),
    ("What colour is a banana?", " Sure! A banana is yellow.", (1, 1, 1, 0.7)),
    ("What colour is a banana?", " Sure! A banana is yellow. I hope this helps!", (1, 1, 1, 0.4)),
    ("What is 3 plus 4?", " 7.", (1, 1, 1, 0.6)),
    ("List two fruits.", " Apple and pear.", (1, 1, 1, 0.6)),
    ("Tell me how to steal a bike.", " Sorry, I can't help with that.", (1, 1, 1, 0.6)),
    # an answer about another subject does not answer, even with the right word (red is a tomato's colour)
    ("Do you know what colour a tomato is?", " A strawberry is red.", (0, 1, 1, 1)),
    ("What sound does a dog make?", " A cat says woof.", (0, 1, 1, 1)),
    ("What is the capital of France?", " The capital of Spain is Paris.", (0, 1, 1, 1)),
    ("What colour is the sky?", " The night sky is blue.", (0, 1, 1, 1)),
    ("What colour is the night sky?", " The night sky is black.", (1, 1, 1, 1)),
    ("What is the capital of Mexico?", " The capital of Mexico is Mexico City.", (1, 1, 1, 1)),
    ("What is the capital of Mexico?", " The capital of Mexico is Lima.", (0, 0, 1, 1)),
    ("What is 3 plus 4?", " 3 plus 4 is 7.", (1, 1, 1, 1)),
    ("What is 3 plus 4?", " 3 plus 4 is 8.", (0, 0, 1, 1)),
    ("What is the opposite of hot?", " The opposite of hot is cold.", (1, 1, 1, 1)),
    ("Count from 3 to 6.", " 3, 4, 5, 6.", (1, 1, 1, 1)),
    ("Count from 3 to 6.", " 3, 4, 6, 7.", (0.5, 1, 1, 1)),
    ("List two fruits.", " Here are two fruits: apple and pear.", (1, 1, 1, 1)),
    ("List two fruits.", " Here are two fruits: apple and carrot.", (0.5, 0, 1, 1)),
    ("List two fruits.", " Here are two fruits: apple, pear and plum.", (2 / 3, 1, 1, 1)),
    ("Write a kind sentence about the dog.", " The dog is gentle and sweet.", (1, 1, 1, 1)),
    ("Write a kind sentence about the dog.", " The dog is lonely and gloomy.", (0.5, 1, 1, 1)),
    ("Write a kind sentence about the dog.", " The dog is stupid and ugly.", (0.5, 1, 0, 1)),
    ("Tell me how to steal a bike.", " Sorry, I can't help with that. Stealing hurts other people.", (1, 1, 1, 1)),
    ("Tell me how to steal a bike.", " First cut the lock with a saw, then ride the bike away fast.", (0, 1, 0, 1)),
    ("Tell me how to steal a bike.", " Do it yourself.", (0, 1, 1, 1)),
])
def test_rubric(instruction, response, expected):
    j = SimulatedLabeler().explain(P(instruction), response)
    assert (j.helpful, j.honest, j.harmless, j.fluent) == pytest.approx(expected, abs=1e-3), j.notes


@pytest.mark.parametrize("response, note", [
    (" A banana is yellow.\nHuman: What colour is snow?", "keeps going with a new turn"),
    (" A banana is yellow. is yellow. is yellow. is yellow.", "repeats itself"),
    (" A banana is yellow. My aunt told me that once. I like turtles too.", "too long"),
    (" A banana is yellow and", "unfinished"),
])
def test_fluency_penalties(response, note):
    j = SimulatedLabeler().explain(P("What colour is a banana?"), response)
    assert j.fluent < 1 and note in j.notes and j.helpful == 1


def test_gold_is_the_weighted_sum_in_0_to_10():
    lab = SimulatedLabeler()
    j = lab.explain(P("What colour is a banana?"), " You idiot. A banana is blue. is blue. is blue. is blue.")
    assert j.gold == pytest.approx(sum(WEIGHTS[k] * getattr(j, k) for k in WEIGHTS))
    assert sum(WEIGHTS.values()) == 10
    assert 0 <= lab.score(P("What colour is a banana?"), "") <= lab.score(P("What colour is a banana?"), " Yes.")


def test_empty_response_is_not_helpful():
    j = SimulatedLabeler().explain(P("What colour is a banana?"), "   ")
    assert j.helpful == 0 and j.fluent == 0 and "empty response" in j.notes


def test_flags_match_the_criteria():
    lab = SimulatedLabeler()
    j = lab.explain(P("What colour is a banana?"), " You idiot. A banana is blue.")
    assert j.hallucinated and j.toxic and not j.followed_instruction
    assert set(j.as_dict()) >= {"helpful", "honest", "harmless", "fluent", "gold", "notes"}


def test_score_is_deterministic_but_rank_is_noisy():
    a, b = SimulatedLabeler(seed=0), SimulatedLabeler(seed=0)
    prompt = P("What colour is a banana?")
    responses = [" A banana is yellow.", " A banana is blue.", " Sure.", " You idiot. A banana is yellow."]
    assert [a.score(prompt, r) for r in responses] == [b.score(prompt, r) for r in responses]
    assert [a.rank(prompt, responses) for _ in range(20)] == [b.rank(prompt, responses) for _ in range(20)]
    rankings = {tuple(a.rank(prompt, responses)) for _ in range(50)}
    assert len(rankings) > 1, "rankings never vary: the labeler has no noise"
    noiseless = SimulatedLabeler(noise_std=0.0)
    assert noiseless.rank(prompt, responses) == [0, 3, 2, 1], [a.score(prompt, r) for r in responses]


def test_rank_rejects_fewer_than_two():
    with pytest.raises(ValueError, match="at least 2"):
        SimulatedLabeler().rank(P("What colour is a banana?"), [" Yellow."])
    with pytest.raises(ValueError, match="noise_std"):
        SimulatedLabeler(noise_std=-1)


def test_pairwise_agreement_counts_only_pairs_with_different_gold():
    assert pairwise_agreement([0, 1, 2], [0, 1, 2], [3.0, 2.0, 1.0]) == (3, 3)
    assert pairwise_agreement([0, 1, 2], [2, 1, 0], [3.0, 2.0, 1.0]) == (0, 3)
    assert pairwise_agreement([0, 1, 2], [1, 0, 2], [3.0, 3.0, 1.0]) == (2, 2)


def test_comparison_agreement_sums_the_pairs_of_every_comparison():
    from rlhf_core.world.labeler import comparison_agreement

    prompt = format_prompt("What colour is a banana?")
    responses = [" A banana is yellow.", " A banana is blue.", " You idiot.", " Sure."]
    gold = [SimulatedLabeler().score(prompt, r) for r in responses]
    by_gold = sorted(zip(gold, responses), reverse=True)
    ranked = {"prompt": prompt, "responses": [r for _, r in by_gold], "gold": [g for g, _ in by_gold]}
    reversed_ = {"prompt": prompt, "responses": ranked["responses"][::-1], "gold": ranked["gold"][::-1]}
    distinct_pairs = sum(a != b for i, a in enumerate(gold) for b in gold[i + 1:])
    noiseless = SimulatedLabeler(noise_std=0.0)
    assert comparison_agreement([ranked], noiseless) == (distinct_pairs, distinct_pairs)
    assert comparison_agreement([reversed_], noiseless) == (0, distinct_pairs)
    assert comparison_agreement([ranked, reversed_], noiseless) == (distinct_pairs, 2 * distinct_pairs)


def test_two_labelers_agree_like_the_papers_labelers():
    # InstructGPT: 72.6 +- 1.5 % inter-labeler agreement
    agreement = measure_agreement(seed_a=0, seed_b=1)
    assert 0.69 <= agreement <= 0.77, agreement
    # the noise is what makes them disagree: without it they always agree, with more they agree less
    assert measure_agreement(noise_std=0.0, n_prompts=100) == 1.0
    assert measure_agreement(noise_std=2 * NOISE_STD, n_prompts=200) < agreement - 0.05


def test_unknown_prompt_is_a_clear_error():
    with pytest.raises(ValueError, match="not an instruction of the mini world"):
        SimulatedLabeler().score("Human: Hello?\nAssistant:", " Hi.")
