"""Measure settings ("levers") against the defaults on the dev split, paired, one seed per process.

    RLHF_THREADS=1 python benchmarks/dev_levers.py --seed 0 --out runs/levers/seed-0.json

For one seed it trains the SFT model once, then each lever's reward model and PPO run as the pipeline would
(`rlhf_core.pipeline.run_pipeline`: the same seeds, labelers and order), sharing every stage a lever leaves alone, and
judges base, SFT and each PPO run on the dev prompts, `--answers` sampled answers each (prompt i's j-th answer of one
model against the j-th of the other, so every comparison is paired). It prints and writes, per lever: PPO's win over
the base model and over SFT (ties half), gold, the share of answers that state a false fact, KL(PPO ‖ SFT) on dev,
and the seconds of the reward model and of PPO. `--base DIR` starts from another base model than the shipped one
(one that `python -m rlhf_core.stages.pretrain --out DIR` wrote), to measure a change to pretraining the same way.
`perfect_reward` is no setting but the pipeline's ceiling run, PPO against the labeler itself. Tune on dev only; eval
stays for the settings chosen (README, "How we measure"): `--eval` judges the default's run and the ceiling run on the
eval prompts too, in the same way, to see whether dev and eval agree. Run two seeds at a time on two cores, each
with RLHF_THREADS=1.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
from pathlib import Path

import torch

from rlhf_core.common.files import atomic_file
from rlhf_core.common.seeds import derive_seed
from rlhf_core.common.timing import Stopwatch
from rlhf_core.evaluate import judge_all, policy_kl, win_rate
from rlhf_core.models.heads import LabelerReward
from rlhf_core.models.loading import load_base
from rlhf_core.models.sequences import sample_responses
from rlhf_core.stages.ppo import PPOConfig
from rlhf_core.stages.ppo_runs import train_ppo_run
from rlhf_core.stages.reward import RewardConfig, build_reward_model
from rlhf_core.stages.sft import SFTConfig, train_sft
from rlhf_core.world.data import load_split
from rlhf_core.world.labeler import SimulatedLabeler

# lever -> (the reward model's settings, PPO's settings), each a change from the defaults
LEVERS = {
    "default": ({}, {}),
    "rm_batch16": ({"batch_size": 16, "lr": 3e-4 * math.sqrt(2)}, {}),  # half the steps, lr scaled by √(batch ratio)
    "ppo_minibatch32": ({}, {"minibatch_size": 32}),                    # half the gradient steps per epoch
    "rm_epochs4": ({"epochs": 4}, {}),                                  # the reward model trained twice as long
    "perfect_reward": ({}, {}),  # not a setting: PPO against the labeler itself, the pipeline's ceiling run
}
PERFECT_REWARD = "perfect_reward"  # its reward is LabelerReward; its critic still starts from the reward model's body
PUBLISHED = ("default", PERFECT_REWARD)  # the runs the pipeline publishes: the only ones --eval judges on eval


def judgements(model, tokenizer, prompts: list[str], answers: int, seed: int, judge: SimulatedLabeler) -> list:
    """The labeler's judgements of `answers` sampled answers per prompt, answer-major: [answer 0 of every prompt,
    answer 1 of ...]."""
    judged = []
    for j in range(answers):
        # answer j of every model is drawn with the same seed: model A's j-th answer is paired with model B's
        responses = sample_responses(model, tokenizer, prompts, seed=1000 * seed + j)
        judged += judge_all(prompts, responses, judge)
    return judged


def gold_scores(model, tokenizer, prompts: list[str], answers: int, seed: int, judge: SimulatedLabeler) -> list[float]:
    """Gold of `answers` sampled answers per prompt, answer-major, as `judgements` orders them."""
    return [judgement.gold for judgement in judgements(model, tokenizer, prompts, answers, seed, judge)]


def false_fact_rate(judged: list) -> float:
    """The share of answers that state a false fact (the pipeline's hallucination rate)."""
    return sum(judgement.hallucinated for judgement in judged) / len(judged)


# --quick: a smoke run that checks the script in a minute and measures nothing
QUICK = {"rm": {"rounds": 1, "epochs": 1}, "ppo": {"iterations": 2}, "dev_prompts": 16, "rm_prompts": 48}


def run(seed: int, levers: list[str], answers: int, quick: bool = False, also_eval: bool = False,
        base_model: str = "tiny") -> dict:
    torch.manual_seed(seed)
    prompts = list(load_split("dev")["prompt"])[:QUICK["dev_prompts"] if quick else None]
    eval_prompts = list(load_split("eval")["prompt"])[:QUICK["dev_prompts"] if quick else None] if also_eval else []
    rm_prompts = list(load_split("rm")["prompt"])[:QUICK["rm_prompts"]] if quick else None  # None: the default's
    judge = SimulatedLabeler(seed=derive_seed(seed, "judge"))
    stopwatch = Stopwatch()
    base, tokenizer = load_base(base_model)
    sft = copy.deepcopy(base)
    train_sft(sft, tokenizer, SFTConfig(seed=seed), progress=False)
    sft.eval()
    judged = {name: judgements(model, tokenizer, prompts, answers, seed, judge)
              for name, model in (("base", base), ("sft", sft))}
    scores = {name: [judgement.gold for judgement in judged[name]] for name in judged}
    eval_scores = {name: gold_scores(model, tokenizer, eval_prompts, answers, seed, judge)
                   for name, model in (("base", base), ("sft", sft))} if also_eval else {}
    stopwatch.lap()
    reward_models, results = {}, {}
    for lever in levers:
        rm_change, ppo_change = LEVERS[lever]
        # a lever's own change wins over --quick's (a smoke run of rm_epochs4 still trains 4 epochs)
        rm_config = dataclasses.replace(RewardConfig(seed=seed), **{**(QUICK["rm"] if quick else {}), **rm_change})
        key = json.dumps(rm_change, sort_keys=True)
        rm_seconds = 0.0
        if key not in reward_models:
            reward_models[key] = build_reward_model(sft, tokenizer, rm_config, base_model=base,
                                                    labeler=SimulatedLabeler(seed=derive_seed(seed, "ranking_labeler")),
                                                    progress=False, prompts=rm_prompts)
            rm_seconds = stopwatch.lap()
        reward_model, rm_log, _ = reward_models[key]
        ppo_config = dataclasses.replace(PPOConfig(seed=seed), **{**(QUICK["ppo"] if quick else {}), **ppo_change})
        reward = LabelerReward(tokenizer) if lever == PERFECT_REWARD else reward_model
        trainer, _ = train_ppo_run(sft, tokenizer, reward, reward_model, ppo_config,
                                   SimulatedLabeler(seed=derive_seed(seed, "ppo_labeler")), progress=False)
        ppo_seconds = stopwatch.lap()
        policy = trainer.policy.eval()
        ppo_judged = judgements(policy, tokenizer, prompts, answers, seed, judge)
        ppo_scores = [judgement.gold for judgement in ppo_judged]
        results[lever] = {
            "vs_base": win_rate(ppo_scores, scores["base"]).rate,
            "vs_sft": win_rate(ppo_scores, scores["sft"]).rate,
            "gold": sum(ppo_scores) / len(ppo_scores),
            "false_fact_rate": false_fact_rate(ppo_judged),
            "kl": policy_kl(policy, sft, tokenizer, prompts, seed=seed),
            "rm_heldout_accuracy": rm_log["rm/heldout_accuracy"],
            "rm_seconds": round(rm_seconds, 1),  # 0: this lever reuses an earlier lever's reward model
            "ppo_seconds": round(ppo_seconds, 1),
        }
        if also_eval and lever in PUBLISHED:  # the settings chosen: the only ones eval is for
            held_out = gold_scores(policy, tokenizer, eval_prompts, answers, seed, judge)
            results[lever]["eval"] = {"vs_base": win_rate(held_out, eval_scores["base"]).rate,
                                      "vs_sft": win_rate(held_out, eval_scores["sft"]).rate,
                                      "gold": sum(held_out) / len(held_out)}
        stopwatch.lap()
        row = results[lever]
        print(f"seed {seed} {lever:>16}: vs base {100 * row['vs_base']:.1f} %, vs SFT {100 * row['vs_sft']:.1f} %, "
              f"gold {row['gold']:.2f}, KL {row['kl']:.2f}, RM acc {row['rm_heldout_accuracy']:.3f}, "
              f"RM {row['rm_seconds']} s, PPO {row['ppo_seconds']} s", flush=True)
        if "eval" in row:
            print(f"seed {seed} {lever:>16}: on eval vs base {100 * row['eval']['vs_base']:.1f} %, "
                  f"vs SFT {100 * row['eval']['vs_sft']:.1f} %, gold {row['eval']['gold']:.2f}", flush=True)
    return {"seed": seed, "answers": answers, "quick": quick, "threads": torch.get_num_threads(),
            "base_model": base_model, "gold": {name: sum(s) / len(s) for name, s in scores.items()},
            "false_fact_rate": {name: false_fact_rate(j) for name, j in judged.items()}, "levers": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of {', '.join(LEVERS)}")
    parser.add_argument("--answers", type=int, default=4, help="sampled answers per prompt and model")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--eval", action="store_true", help="also judge the default's PPO run (and perfect_reward's) "
                        "on the held-out eval prompts, as on dev (eval is for the chosen settings only)")
    parser.add_argument("--quick", action="store_true", help="a smoke run in a minute: checks the script, measures "
                        "nothing (1 round of rankings of 48 prompts, 1 epoch, 2 PPO iterations, 16 dev prompts)")
    parser.add_argument("--base", default="tiny", help="the base model: tiny (the shipped one) or a checkpoint "
                        "folder, e.g. one `python -m rlhf_core.stages.pretrain --out DIR` wrote")
    args = parser.parse_args(argv)
    levers = args.levers.split(",")
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        parser.error(f"unknown lever(s) {unknown}: choose from {sorted(LEVERS)}")
    if args.answers < 1:
        parser.error(f"--answers {args.answers}: each model needs at least 1 answer per prompt")
    if args.eval and not set(PUBLISHED) & set(levers):
        parser.error(f"--eval judges the published runs on eval: include {' or '.join(PUBLISHED)} in --levers")
    result = run(args.seed, levers, args.answers, args.quick, args.eval, args.base)
    out = Path(args.out)
    with atomic_file(out) as file:
        file.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
