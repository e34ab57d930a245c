"""All three stages, headless: base → SFT → reward model → PPO, then the results table.

    python -m rlhf_core.pipeline --out runs/pipeline [--seed 0] [--model tiny] [--summary FILE]

Besides the three stages it trains what the paper's comparisons need: a PPO-ptx policy (pretraining
log-likelihood mixed into PPO), the larger base model given SFT only, and PPO against the labeler itself (a
perfect reward: the ceiling of PPO in this budget); and, beyond PPO (notebook 07), DPO on the reward model's
training rankings and a critic-free policy gradient (RLOO: k answers per prompt, a leave-one-out baseline). It also
measures what decoding alone buys the SFT model (T = 0.7 and 0.5, greedy, the labeler's best of n samples, and the
reward model's): the yardsticks any RL is held against.
Writes DIR/results.json — gold scores, the win rates of `evaluate.WIN_RATE_PAIRS` with 95 % intervals,
hallucination / toxicity / instruction-following rates, toxicity with a "be respectful" turn, the alignment tax
(perplexity on held-out pretraining text), KL to SFT, the decoding yardsticks ("sft_decoding"), reward-model
accuracy, labeler agreement, seconds per stage, torch's thread count (the numbers depend on it) — and DIR/ppo.png
(the training curves), DIR/rates.png (failure rates per model) and DIR/win_rates.png. Every measurement is on the
held-out "eval" prompts, judged by the simulated labeler's gold score. `--summary FILE` also writes the results
without the samples and the training histories: data/results/seed-N.json are those of the README's tables, which
notebook 05 shows beside its own run.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .common.files import atomic_file
from .common.paths import DATA_DIR
from .common.seeds import derive_seed
from .common.timing import Stopwatch
from .evaluate import decoding_ceilings, evaluate_suite, policy_kl
from .models.heads import LabelerReward
from .models.loading import default_device, load_base
from .notebook.dashboard import plot_history
from .notebook.display import save_figure
from .notebook.figures import bar_rates, win_rate_figure
from .stages.dpo import DPOConfig, train_dpo
from .stages.ppo import PPOConfig
from .stages.ppo_runs import train_ppo_run
from .stages.reward import RewardConfig, build_reward_model, split_heldout
from .stages.sft import SFTConfig, train_sft
from .world.data import load_split, training_prompts
from .world.labeler import SimulatedLabeler, comparison_agreement


@dataclass
class PipelineConfig:
    model: str = "tiny"                      # the base model: "tiny", "small", or a from_pretrained name/path
    seed: int = 0
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    ptx_run_coef: float = 1.0                # PPOConfig.ptx_coef (γ, InstructGPT eq. 2) of the PPO-ptx run; 0: none
    perfect_reward: bool = True              # also run PPO against the labeler itself (LabelerReward): the ceiling
    small_model: str | None = "small"        # the larger base model given SFT only ("size isn't everything"); None skips
    beyond_ppo: bool = True                  # also DPO and the critic-free RLOO run (notebook 07)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rloo_samples: int = 4                    # k answers per prompt of the RLOO run (its batch: batch_size / k prompts)
    eval_prompts: int | None = None          # judge on the first N held-out prompts; None: all (a quick check only)

    def with_seed(self, seed: int) -> "PipelineConfig":
        config = copy.deepcopy(self)
        config.seed = config.sft.seed = config.reward.seed = config.ppo.seed = config.dpo.seed = seed
        return config


def run_pipeline(config: PipelineConfig = PipelineConfig(), out_dir: str | Path | None = None,
                 progress: bool = True, log=print) -> dict:
    """Run every stage with `config` and return the results dict (also written to out_dir/results.json)."""
    if config.eval_prompts is not None and config.eval_prompts < 2:
        raise ValueError(f"eval_prompts = {config.eval_prompts}: a win rate's interval needs at least 2 prompts; "
                         "use None for all of them")
    torch.manual_seed(config.seed)
    prompts = list(load_split("eval")["prompt"])[:config.eval_prompts]
    seconds, models, histories = {}, {}, {}
    stopwatch = Stopwatch()

    def labeler(stream):  # a fresh labeler of one of the run's random streams (common.seeds)
        return SimulatedLabeler(seed=derive_seed(config.seed, stream))

    def timed(stage):  # the seconds since the previous stage ended
        seconds[stage] = stopwatch.lap()

    models["base"], tokenizer = load_base(config.model)
    if config.small_model:  # checked before any training, so a mismatch fails in seconds
        small_base, small_tokenizer = load_base(config.small_model)
        if config.small_model == config.model or small_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"small_model {config.small_model!r} must be a larger model than {config.model!r} with "
                             "the same tokenizer (the shipped pair is tiny and small); set small_model=None "
                             "(--small-model none) to skip that comparison")
    timed("base")

    models["sft"] = copy.deepcopy(models["base"])
    train_sft(models["sft"], tokenizer, config.sft, progress=progress)
    timed("sft")

    reward_model, rm_log, comparisons = build_reward_model(models["sft"], tokenizer, config.reward,
                                                           base_model=models["base"],
                                                           labeler=labeler("ranking_labeler"),
                                                           progress=progress)
    timed("reward_model")
    log(f"reward model: held-out accuracy {rm_log['rm/heldout_accuracy']:.3f} "
        f"(gold {rm_log['rm/heldout_gold_accuracy']:.3f})")

    ppo_runs = {"ppo": (config.ppo, reward_model)}
    if config.ptx_run_coef > 0:
        ppo_runs["ppo_ptx"] = (dataclasses.replace(config.ppo, ptx_coef=config.ptx_run_coef), reward_model)
    if config.perfect_reward:
        ppo_runs["ppo_perfect"] = (config.ppo, LabelerReward(tokenizer))
    if config.beyond_ppo:  # the same budget of episodes, no critic: k answers per prompt, a leave-one-out baseline
        ppo_runs["rloo"] = (dataclasses.replace(config.ppo, advantage="rloo", samples_per_prompt=config.rloo_samples),
                            reward_model)
    for name, (ppo_config, reward) in ppo_runs.items():  # each seeded with ppo_config.seed = config.seed (with_seed)
        trainer, histories[name] = train_ppo_run(models["sft"], tokenizer, reward, reward_model, ppo_config,
                                                 labeler("ppo_labeler"), progress)
        models[name] = trainer.policy.eval()
        timed(name)

    if config.beyond_ppo:  # DPO on the rankings the reward model trained on (its held-out ones stay out)
        torch.manual_seed(config.seed)
        models["dpo"] = copy.deepcopy(models["sft"])
        train_rankings, _ = split_heldout(comparisons, config.reward.heldout_fraction, config.reward.seed)
        histories["dpo"] = train_dpo(models["dpo"], models["sft"], tokenizer, train_rankings, config.dpo,
                                     progress=progress)
        models["dpo"].eval()
        timed("dpo")

    if config.small_model:
        models["small_base"] = copy.deepcopy(small_base)
        models["small_sft"] = small_base
        train_sft(models["small_sft"], tokenizer, config.sft, progress=progress)
        timed("small_sft")

    demos = load_split("sft")
    suite = evaluate_suite(models, tokenizer, prompts, labeler("judge"), seed=config.seed,
                           demonstrations=list(zip(demos["prompt"], demos["response"])), progress=progress)
    kl = {f"{name}_vs_sft": policy_kl(models[name], models["sft"], tokenizer, prompts, seed=config.seed)
          for name in [*ppo_runs, *(["dpo"] if config.beyond_ppo else [])]}
    ceilings = decoding_ceilings(models["sft"], tokenizer, prompts, labeler("judge"), config.seed,
                                 reward_model=reward_model if config.beyond_ppo else None)
    timed("evaluation")

    rates = suite["rates"]
    agree, compared = comparison_agreement(rm_log["heldout"], labeler("second_labeler"))
    results = {
        "config": asdict(config),
        "gold_score": suite["gold_score"],
        "win_rate": {key: w.as_dict() for key, w in suite["win_rate"].items()},
        "kl": kl,
        "sft_decoding": {name: c | {"win_rate": c["win_rate"].as_dict()} for name, c in ceilings.items()},
        "rm_accuracy": rm_log["rm/heldout_accuracy"],  # the results' keys since the first release: kept
        "rm_gold_accuracy": rm_log["rm/heldout_gold_accuracy"],
        "labeler_agreement": agree / max(1, compared),
        **{rate: {name: r[rate] for name, r in rates.items()}
           for rate in ("hallucination_rate", "toxicity_rate", "instruction_following_rate")},
        "toxicity_rate_respectful": suite["toxicity_rate_respectful"],
        "alignment_tax": suite["alignment_tax"],
        "rates": rates,
        "seconds": {name: round(s, 1) for name, s in seconds.items()},
        "torch_threads": torch.get_num_threads(),
        "samples": [{"prompt": p, **{name: suite["responses"][name][i] for name in suite["responses"]}}
                    for i, p in enumerate(prompts[:20])],
        **{f"{name}_history": {k: v for k, v in history.items() if k != "samples"}
           for name, history in histories.items()},
    }
    if out_dir is not None:
        write_outputs(results, Path(out_dir))
    log(results_table(results))
    return results


RESULTS_DIR = DATA_DIR / "results"  # the summaries behind the README's tables, one per seed
PUBLISHED_SEEDS = (0, 1, 2)


def published_results(seeds=PUBLISHED_SEEDS, folder: str | Path | None = None) -> dict[int, dict]:
    """The committed summaries of `python -m rlhf_core.pipeline --seed N` (data/results/seed-N.json), by seed: the
    three-seed table of the README, which notebook 05 puts beside its own run."""
    folder = Path(folder) if folder is not None else RESULTS_DIR
    published = {}
    for seed in seeds:
        path = folder / f"seed-{seed}.json"
        again = (f"regenerate it with RLHF_THREADS=1 python -m rlhf_core.pipeline --seed {seed} "
                 f"--out runs/pipeline-seed{seed} --summary {path}")
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {again}")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}): {again}") from None
        missing = [key for key in ("config", "gold_score", "win_rate", "kl") if key not in results]
        if missing or results["config"].get("seed") != seed:
            raise ValueError(f"{path} is not the pipeline's summary for seed {seed} (missing {missing or 'nothing'}, "
                             f"seed {results.get('config', {}).get('seed')}): {again}")
        published[seed] = results
    return published


def summary(results: dict) -> dict:
    """The results without the sample answers and the training histories: the measurements, small enough to commit."""
    return {key: value for key, value in results.items() if key != "samples" and not key.endswith("_history")}


def results_table(results: dict) -> str:
    """The results as a small text table (what the pipeline prints)."""
    lines = ["", f"{'model':13s} {'gold':>6s} {'halluc.':>8s} {'toxic':>6s} {'toxic*':>7s} {'follows':>8s} "
                 f"{'perplexity':>10s}", "-" * 64]
    for name, gold in results["gold_score"].items():
        r = results["rates"][name]
        respectful = results["toxicity_rate_respectful"].get(name)
        tax = results["alignment_tax"].get(name)
        lines.append(f"{name:13s} {gold:6.2f} {r['hallucination_rate']:8.1%} {r['toxicity_rate']:6.1%} "
                     f"{'' if respectful is None else f'{respectful:.1%}':>7s} {r['instruction_following_rate']:8.1%} "
                     f"{'' if tax is None else f'{tax:.3f}':>10s}")
    lines.append("toxic* = with a \"please be respectful\" turn first; perplexity on held-out pretraining text")
    lines.append("")
    for name, w in results["win_rate"].items():
        lines.append(f"win rate {name:22s} {w['rate']:6.1%}  (95% CI {w['ci95'][0]:.1%}–{w['ci95'][1]:.1%})")
    lines.append("SFT decoded differently, vs SFT at T = 1 (what RL must beat): " + ", ".join(
        f"{name} {c['gold']:.2f} ({c['win_rate']['rate']:.0%})" for name, c in results["sft_decoding"].items()
        if name != "t1"))
    for name, kl in results["kl"].items():
        lines.append(f"KL({name.removesuffix('_vs_sft').upper().replace('_', '-')} ‖ SFT) {kl:.2f} nats per response")
    lines.append(f"reward model held-out accuracy {results['rm_accuracy']:.1%} (labeler agreement on the same "
                 f"pairs {results['labeler_agreement']:.1%}; vs gold {results['rm_gold_accuracy']:.1%})")
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()))
    return "\n".join(lines)


def write_outputs(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")


    with atomic_file(out_dir / "results.json") as f:
        f.write(json.dumps(results, indent=1) + "\n")
    # score (≈ 0) and gold (≈ 7) on panels of their own: on one axis the score looks flat whatever it does
    panels = ["objective/score", "objective/gold", "objective/kl", "objective/kl_coef", "objective/total"]
    history = {"step": results["ppo_history"]["iteration"], **results["ppo_history"]}
    save_figure(plot_history(history, panels, title="PPO"), out_dir / "ppo.png")
    labels = {"hallucination_rate": "hallucination", "toxicity_rate": "toxicity",
              "instruction_following_rate": "follows instruction"}  # off task is 1 − follows: left out
    rates = {name: {label: r[key] for key, label in labels.items()} for name, r in results["rates"].items()}
    save_figure(bar_rates(rates, title="Rates on held-out prompts"), out_dir / "rates.png")
    save_figure(win_rate_figure(results["win_rate"]), out_dir / "win_rates.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run base → SFT → RM → PPO and print the results table.")
    parser.add_argument("--out", required=True, help="folder for results.json and the plots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny", help='"tiny", "small", or a from_pretrained name or folder')
    parser.add_argument("--ppo-iterations", type=int, default=None, help="override PPOConfig.iterations")
    parser.add_argument("--ptx-run-coef", type=float, default=PipelineConfig.ptx_run_coef,
                        help="γ of the PPO-ptx run (0 skips it)")
    parser.add_argument("--small-model", default=None,
                        help='the larger base model given SFT only; default "small" with --model tiny, '
                             'else none ("none" skips it)')
    parser.add_argument("--no-perfect-reward", action="store_true",
                        help="skip the PPO run against the labeler itself (the ceiling)")
    parser.add_argument("--no-beyond-ppo", action="store_true", help="skip DPO and the critic-free RLOO run")
    parser.add_argument("--rm-prompt-splits", default=None,
                        help='override RewardConfig.prompt_splits (default: every training prompt, "ppo,rm,sft"): '
                             'the splits whose prompts are ranked, e.g. "rm" for the rm split alone')
    parser.add_argument("--summary", default=None,
                        help="also write the results without samples and histories to this file (data/results/)")
    args = parser.parse_args(argv)
    small = args.small_model or ("small" if args.model == "tiny" else "none")
    small = None if small == "none" else small
    config = PipelineConfig(model=args.model, ptx_run_coef=args.ptx_run_coef, small_model=small,
                            perfect_reward=not args.no_perfect_reward,
                            beyond_ppo=not args.no_beyond_ppo).with_seed(args.seed)
    if args.ppo_iterations is not None:
        config.ppo.iterations = args.ppo_iterations
    if args.rm_prompt_splits is not None:
        config.reward.prompt_splits = tuple(name.strip() for name in args.rm_prompt_splits.split(","))
        training_prompts(config.reward.prompt_splits, "--rm-prompt-splits")  # a clear error now, not after SFT
    device = default_device()
    print(f"models on {device}" + (f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else "")
          + " (RLHF_DEVICE and RLHF_THREADS change them)")
    results = run_pipeline(config, args.out)
    if args.summary:
        with atomic_file(args.summary) as f:  # makes the folder
            f.write(json.dumps(summary(results), indent=1) + "\n")


if __name__ == "__main__":
    main()
