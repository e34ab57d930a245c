"""Every random stream of a run derives from the run's one seed, here, so that a reader can see which number seeds
what, and streams of one kind never coincide: the four labelers' noise streams are all different (a test checks it).
Streams of different kinds may share an offset (the judge's noise and the answers sampled for best-of-n both start
at the seed itself): they feed different generators, a labeler's and a model's sampler.

    derive_seed(seed, "ranking_labeler")          # seed + 100: the labeler who ranks the reward model's answers
    derive_seed(seed, "comparison_samples", i)    # seed + i: the i-th batch of answers the labeler ranks

The offsets are the ones every published number of the course was measured with; changing one changes results.
"""
from __future__ import annotations

STREAMS = {
    "judge": 0,                 # the labeler who judges every evaluation (gold scores, win rates)
    "comparison_samples": 0,    # answers sampled for ranking: + 1000 · round + the model's index (seeds < 1000 apart
                                # never overlap)
    "best_of_n": 0,             # the i-th of n answers per prompt, for best-of-n: + i
    "world_styles": 1,          # the world generator: which style each demonstration is written in
    "world_dev": 2,             # the world generator: which PPO prompts are carved off as the dev split
    "ranking_labeler": 100,     # the labeler who ranks the reward model's comparisons
    "answer_pool": 100,         # notebook 07's pool of n answers per prompt (best-of-n): + i for the i-th
    "ppo_labeler": 200,         # the labeler behind PPO's gold metrics during training (the pipeline's runs)
    "second_labeler": 1000,     # a second labeler, for the labeler-agreement measurement
}


def derive_seed(seed: int, stream: str, index: int = 0) -> int:
    """The seed of one random stream of a run seeded `seed` (see STREAMS); `index` numbers repeated draws."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; add it to rlhf_core.common.seeds.STREAMS "
                         f"(known: {', '.join(STREAMS)})")
    return seed + STREAMS[stream] + index


def comparison_sample_seed(seed: int, round_: int, model_index: int) -> int:
    """The sampling seed of one model's answers in one round of rankings (round 0 = a single round)."""
    return derive_seed(seed, "comparison_samples", 1000 * round_ + model_index)
