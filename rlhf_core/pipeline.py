"""All three stages, headless: base → SFT → reward model → PPO, then the results table.

    python -m rlhf_core.pipeline --out runs/pipeline [--seed 0] [--model tiny]

Writes DIR/results.json (gold scores, win rates with 95 % intervals, KL to SFT, reward-model accuracy, labeler
agreement, seconds per stage), DIR/ppo.png (the training curves) and DIR/rates.png (failure rates per model).
Every measurement is on the held-out "eval" prompts, judged by the simulated labeler's gold score.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data import load_split
from .evaluate import evaluate_model, policy_kl, win_rate
from .labeler import SimulatedLabeler, pairwise_agreement
from .models import load_base
from .ppo import PPOConfig, PPOTrainer
from .reward import RewardConfig, build_reward_model
from .sft import SFTConfig, train_sft


@dataclass
class PipelineConfig:
    model: str = "tiny"                      # the base model: "tiny", "small", or a from_pretrained name/path
    seed: int = 0
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def with_seed(self, seed: int) -> "PipelineConfig":
        config = copy.deepcopy(self)
        config.seed = config.sft.seed = config.reward.seed = config.ppo.seed = seed
        return config


def comparison_agreement(comparisons: list[dict], seed: int) -> float:
    """How often a second labeler agrees with the rankings that trained the RM (pairs whose gold differs)."""
    second = SimulatedLabeler(seed=seed + 1000)
    agree = total = 0
    for c in comparisons:
        n_agree, n_total = pairwise_agreement(list(range(len(c["responses"]))),
                                              second.rank(c["prompt"], c["responses"]), c["gold"])
        agree, total = agree + n_agree, total + n_total
    return agree / max(1, total)


def run_pipeline(config: PipelineConfig = PipelineConfig(), out_dir: str | Path | None = None,
                 progress: bool = True, log=print) -> dict:
    """Run every stage with `config` and return the results dict (also written to out_dir/results.json)."""
    torch.manual_seed(config.seed)
    prompts = list(load_split("eval")["prompt"])
    judge = SimulatedLabeler(seed=config.seed)          # the gold judge: only its deterministic score is used
    sampling = {"seed": config.seed}
    seconds, evaluations = {}, {}

    start = time.time()
    base, tokenizer = load_base(config.model)
    evaluations["base"] = evaluate_model(base, tokenizer, prompts, judge, **sampling)
    seconds["base"] = time.time() - start
    log(f"base: gold {evaluations['base'][2]['gold_score']:.2f}")

    start = time.time()
    sft = copy.deepcopy(base)
    train_sft(sft, tokenizer, config.sft, progress=progress)
    evaluations["sft"] = evaluate_model(sft, tokenizer, prompts, judge, **sampling)
    seconds["sft"] = time.time() - start
    log(f"SFT: gold {evaluations['sft'][2]['gold_score']:.2f}")

    start = time.time()
    reward_model, rm_log, comparisons = build_reward_model(sft, tokenizer, config.reward, base_model=base,
                                                           labeler=SimulatedLabeler(seed=config.seed + 100),
                                                           progress=progress)
    seconds["reward_model"] = time.time() - start
    log(f"reward model: held-out accuracy {rm_log['rm/heldout_accuracy']:.3f} "
        f"(gold {rm_log['rm/heldout_gold_accuracy']:.3f})")

    start = time.time()
    trainer = PPOTrainer(copy.deepcopy(sft), tokenizer, reward_model, config.ppo, ref_model=sft,
                         labeler=SimulatedLabeler(seed=config.seed + 200))
    history = trainer.train(progress=progress)
    evaluations["ppo"] = evaluate_model(trainer.policy, tokenizer, prompts, judge, **sampling)
    seconds["ppo"] = time.time() - start
    log(f"PPO: gold {evaluations['ppo'][2]['gold_score']:.2f}")

    gold = {name: [j.gold for j in ev[1]] for name, ev in evaluations.items()}
    results = {
        "config": asdict(config),
        "gold_score": {name: ev[2]["gold_score"] for name, ev in evaluations.items()},
        "win_rate": {"ppo_vs_sft": win_rate(gold["ppo"], gold["sft"]).as_dict(),
                     "ppo_vs_base": win_rate(gold["ppo"], gold["base"]).as_dict(),
                     "sft_vs_base": win_rate(gold["sft"], gold["base"]).as_dict()},
        "kl": {"ppo_vs_sft": policy_kl(trainer.policy, sft, tokenizer, prompts, seed=config.seed)},
        "rm_accuracy": rm_log["rm/heldout_accuracy"],
        "rm_gold_accuracy": rm_log["rm/heldout_gold_accuracy"],
        "labeler_agreement": comparison_agreement(rm_log["heldout"], config.seed),
        "rates": {name: {k: v for k, v in ev[2].items() if k != "gold_score"} for name, ev in evaluations.items()},
        "seconds": {name: round(s, 1) for name, s in seconds.items()},
        "samples": [{"prompt": p, **{name: evaluations[name][0][i] for name in evaluations}}
                    for i, p in enumerate(prompts[:20])],
        "ppo_history": {k: v for k, v in history.items() if k != "samples"},
    }
    if out_dir is not None:
        write_outputs(results, Path(out_dir))
    log(results_table(results))
    return results


def results_table(results: dict) -> str:
    """The results as a small text table (what the pipeline prints)."""
    lines = ["", f"{'model':6s} {'gold':>6s} {'halluc.':>8s} {'toxic':>6s} {'follows':>8s}"]
    for name, gold in results["gold_score"].items():
        r = results["rates"][name]
        lines.append(f"{name:6s} {gold:6.2f} {r['hallucination_rate']:8.1%} {r['toxicity_rate']:6.1%} "
                     f"{r['instruction_following_rate']:8.1%}")
    lines.append("")
    for name, w in results["win_rate"].items():
        lines.append(f"win rate {name:12s} {w['rate']:6.1%}  (95% CI {w['ci95'][0]:.1%}–{w['ci95'][1]:.1%})")
    lines.append(f"KL(PPO ‖ SFT) {results['kl']['ppo_vs_sft']:.2f} nats per response")
    lines.append(f"reward model held-out accuracy {results['rm_accuracy']:.1%} (labeler agreement on the same "
                 f"pairs {results['labeler_agreement']:.1%}; vs gold {results['rm_gold_accuracy']:.1%})")
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()))
    return "\n".join(lines)


def write_outputs(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .plots import bar_rates, plot_history, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out_dir / "results.json")
    panels = [("objective/score", "objective/gold"), "objective/kl", "objective/kl_coef", "objective/total"]
    history = {"step": results["ppo_history"]["iteration"], **results["ppo_history"]}
    save_figure(plot_history(history, panels, title="PPO"), out_dir / "ppo.png")
    save_figure(bar_rates(results["rates"], title="Failure rates on held-out prompts"), out_dir / "rates.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run base → SFT → RM → PPO and print the results table.")
    parser.add_argument("--out", required=True, help="folder for results.json and the plots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny", help='"tiny", "small", or a from_pretrained name or folder')
    parser.add_argument("--ppo-iterations", type=int, default=None, help="override PPOConfig.iterations")
    args = parser.parse_args(argv)
    config = PipelineConfig(model=args.model).with_seed(args.seed)
    if args.ppo_iterations is not None:
        config.ppo.iterations = args.ppo_iterations
    run_pipeline(config, args.out)


if __name__ == "__main__":
    main()
