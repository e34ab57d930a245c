"""Stage 2: the reward model, trained on rankings of K samples per prompt (InstructGPT §3.5, eq. 1).

1. collect: for each RM prompt, sample K responses (K − k_from_base from the SFT model, the rest from the base
   model; k_sharp of the SFT ones at lower temperatures); the (simulated) labeler ranks them. `rounds` times,
   with fresh responses: each round is one ranking.
2. train: a GPT-2 body (copied from the SFT model) + scalar head; all C(K,2) pairs of a prompt form one batch
   element of the ranking loss — comparisons from one prompt are highly correlated, and shuffling them as
   independent examples made the paper's RM overfit after one pass.
3. normalise: the score is shift-invariant, so a bias is set so the demonstrations score 0 on average.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch

from ..common.paths import run_path
from ..common.seeds import comparison_sample_seed, derive_seed
from ..common.timing import Stopwatch
from ..losses import ranking_loss
from ..models.heads import RewardModel, normalise_reward
from ..models.loading import SHIPPED, load_base
from ..models.sequences import sample_responses, tokenize_prompts, tokenize_responses
from ..world.data import TRAINING_PROMPT_SPLITS, load_split, training_prompts
from ..world.labeler import SimulatedLabeler
from . import provenance
from .sft import SFTConfig, load_or_train_sft, sft_checkpoint
from .training import gradient_step, record_step


@dataclass
class RewardConfig:
    k: int = 8                   # completions ranked per prompt (InstructGPT: 4 to 9)
    k_from_base: int = 1         # how many of the K come from the base model (the rest from the SFT model)
    rounds: int = 5              # rankings per prompt, each of K fresh answers: more labels, the RM's main lever
    temperature: float = 1.0     # sampling temperature of the SFT model for the comparisons
    k_sharp: int = 4             # how many of the SFT answers are sampled sharper, at sharp_temperatures: without
                                 # them the RM never sees the low-temperature answers PPO learns to write
    sharp_temperatures: tuple[float, ...] = (0.7, 0.5)  # the k_sharp answers split evenly over these temperatures
    max_new_tokens: int = 32
    epochs: int = 2              # InstructGPT: one epoch of 33k prompts; our ~2,570 training rankings need a second pass
    batch_size: int = 8          # rankings per step, each with all its C(K,2) pairs
    lr: float = 3e-4
    heldout_fraction: float = 0.15  # RM prompts kept out of training, for the held-out accuracy
    prompt_splits: tuple[str, ...] = TRAINING_PROMPT_SPLITS  # whose prompts are ranked: every training prompt
                                 # (ppo, rm, sft: 605) covers more of the world's subjects than the rm split alone
                                 # (294), and the RM learns facts it would never see there (README, "What each
                                 # setting bought")
    seed: int = 0


def collect_comparisons(models: list, tokenizer, prompts: list[str], labeler: SimulatedLabeler | None = None,
                        temperature: float = 1.0, max_new_tokens: int = 32, seed: int = 0,
                        rounds: int = 1) -> list[dict]:
    """Sample responses to each prompt from each (model, count) in `models`; the labeler ranks all K of them.

    Returns [{"prompt", "responses" (best first), "gold"}] with K = the sum of the counts: one comparison per
    prompt and round, round after round (each round samples K fresh answers to every prompt, so a prompt is
    ranked `rounds` times). InstructGPT's comparisons compare outputs of several of their models (§3.2); "gold"
    keeps each ranked response's gold score, so we can see how noisy the ranking was. An entry may carry its own
    sampling temperature, (model, count, temperature), e.g. sharper SFT answers; a plain (model, count) samples
    at `temperature`.
    """
    models = [(entry[0], entry[1], entry[2] if len(entry) > 2 else temperature) for entry in models]
    k = sum(count for _, count, _ in models)
    if not 2 <= k <= 9:
        raise ValueError(f"K = {k}: InstructGPT ranks K = 4 to 9 completions a prompt; use 2 <= K <= 9")
    if rounds < 1:
        raise ValueError(f"rounds = {rounds}: each prompt must be ranked at least once; use rounds >= 1")
    labeler = labeler or SimulatedLabeler(seed=seed)
    comparisons = []
    for round_ in range(rounds):
        per_model = []
        for index, (model, count, model_temperature) in enumerate(models):
            repeated = [p for p in prompts for _ in range(count)]
            sample_seed = comparison_sample_seed(seed, round_, index)
            samples = sample_responses(model, tokenizer, repeated, max_new_tokens=max_new_tokens,
                                       temperature=model_temperature, seed=sample_seed) if count else []
            per_model.append((samples, count))
        for i, prompt in enumerate(prompts):
            responses = [r for samples, count in per_model for r in samples[i * count:(i + 1) * count]]
            order = labeler.rank(prompt, responses)
            ranked = [responses[j] for j in order]
            comparisons.append({"prompt": prompt, "responses": ranked,
                                "gold": [labeler.score(prompt, r) for r in ranked]})
    return comparisons


def comparison_scores(reward_model: RewardModel, tokenizer, comparisons: list[dict]) -> torch.Tensor:
    """Reward of every ranked response: (B, K), columns best first; each prompt is read once for its K answers."""
    k = len(comparisons[0]["responses"])
    counts = sorted({len(c["responses"]) for c in comparisons})
    if len(counts) > 1:
        raise ValueError(f"comparisons rank different numbers of answers ({counts}); score rankings of the same K "
                         "together")
    responses = [r for c in comparisons for r in c["responses"]]
    query_ids, query_mask = tokenize_prompts(tokenizer, [c["prompt"] for c in comparisons])  # (B, P)
    response_ids, response_mask = tokenize_responses(tokenizer, responses)                   # (B*K, T)
    scores = reward_model.score_ranking(query_ids, query_mask, response_ids, response_mask)  # (B*K,)
    return scores.view(len(comparisons), k)                                                  # (B, K)


def pairwise_accuracy(rewards: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """Fraction of pairs (i better than j, i < j: columns best first) that the reward model orders the same way.

    rewards (B, K); valid (B, K, K) bool optionally restricts which pairs count (e.g. only pairs of different
    texts, or only pairs whose gold scores differ). Ties in the reward count as wrong.
    """
    b, k = rewards.shape
    counted = torch.ones(b, k, k, dtype=torch.bool, device=rewards.device).triu(1)  # (B, K, K): pairs i < j
    if valid is not None:
        counted &= valid.to(rewards.device)
    right = rewards[:, :, None] > rewards[:, None, :]                       # (B, K, K): r_i > r_j
    return (right & counted).sum().item() / max(1, counted.sum().item())


def train_reward_model(reward_model: RewardModel, tokenizer, comparisons: list[dict],
                       config: RewardConfig = RewardConfig(), heldout: list[dict] | None = None,
                       callback=None, progress: bool = True) -> dict:
    """Train on the ranking loss; returns the log {"step", "rm/loss", "rm/accuracy", held-out accuracies}."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(reward_model.parameters(), lr=config.lr)
    total_steps = config.epochs * math.ceil(len(comparisons) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total_steps)
    log = {"config": asdict(config), "step": [], "rm/loss": [], "rm/accuracy": []}
    reward_model.train()
    stopwatch = Stopwatch()
    step = 0
    with tqdm(total=total_steps, desc="reward model", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(comparisons), generator=generator).tolist()
            for i in range(0, len(order), config.batch_size):
                batch = [comparisons[j] for j in order[i:i + config.batch_size]]
                rewards = comparison_scores(reward_model, tokenizer, batch)   # (B, K)
                loss = ranking_loss(rewards)
                gradient_step(loss, reward_model, optimizer, f"reward model, step {step}",
                              f"lower RewardConfig.lr (now {config.lr})")
                schedule.step()
                metrics = {"rm/loss": loss.item(), "rm/accuracy": pairwise_accuracy(rewards.detach())}
                record_step(log, step, metrics, callback, bar)
                step += 1
    reward_model.eval()
    log["seconds"] = stopwatch.seconds(1)
    if heldout:
        log |= evaluate_reward_model(reward_model, tokenizer, heldout)
    return log


@torch.no_grad()
def evaluate_reward_model(reward_model: RewardModel, tokenizer, comparisons: list[dict]) -> dict:
    """Held-out accuracy: agreement with the labeler's ranking (pairs of different texts), and with gold.

    The labeler's ranking is noisy, so even a perfect model agrees with it only as often as two labelers
    agree with each other; agreement with the gold scores (pairs whose gold differs) has a ceiling of 1.
    """
    rewards = torch.cat([comparison_scores(reward_model, tokenizer, comparisons[i:i + 32]).cpu()
                         for i in range(0, len(comparisons), 32)])                  # (B, K)
    gold = torch.tensor([c["gold"] for c in comparisons])                   # (B, K), in the labeler's order
    distinct = torch.tensor([[[a != b for b in c["responses"]] for a in c["responses"]] for c in comparisons])
    gold_order = torch.sign(gold[:, :, None] - gold[:, None, :])            # (B, K, K): +1 if i is truly better
    agrees_gold = torch.sign(rewards[:, :, None] - rewards[:, None, :]) == gold_order
    gold_differs = gold_order != 0
    return {"rm/heldout_accuracy": pairwise_accuracy(rewards, distinct),
            "rm/heldout_gold_accuracy": (agrees_gold & gold_differs).sum().item() / max(1, gold_differs.sum().item())}


def split_heldout(comparisons: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout): `fraction` of the distinct prompts go to heldout with all their comparisons (every round),
    so the held-out accuracy is measured on prompts the reward model never saw."""
    prompts = list(dict.fromkeys(c["prompt"] for c in comparisons))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(prompts), generator=generator).tolist()
    heldout_prompts = {prompts[i] for i in order[:int(len(prompts) * fraction)]}
    return ([c for c in comparisons if c["prompt"] not in heldout_prompts],
            [c for c in comparisons if c["prompt"] in heldout_prompts])


def comparison_sources(sft_model, base_model=None, config: RewardConfig = RewardConfig()) -> list[tuple]:
    """Who writes the K answers of a ranking: `collect_comparisons`' (model, count, temperature) entries.

    `config.k_from_base` answers come from `base_model` (when given), the rest from the SFT model: `config.k_sharp`
    of those at `config.sharp_temperatures` (split evenly, the first ones taking any remainder), the others at
    `config.temperature`. The base model stays entry 1, so k_sharp = 0 samples exactly what it did before it existed.
    """
    from_base = config.k_from_base if base_model is not None else 0
    if not 0 <= config.k_sharp <= config.k - from_base:
        raise ValueError(f"k_sharp = {config.k_sharp}: at most the k − k_from_base = {config.k - from_base} "
                         f"SFT answers can be sampled sharper; lower k_sharp or raise k")
    if config.k_sharp and not config.sharp_temperatures:
        raise ValueError(f"k_sharp = {config.k_sharp} with no sharp_temperatures: give at least one, e.g. (0.7,)")
    models = [(sft_model, config.k - from_base - config.k_sharp, config.temperature)]
    models += [(base_model, from_base, config.temperature)] if from_base else []
    share, extra = divmod(config.k_sharp, len(config.sharp_temperatures) or 1)
    return models + [(sft_model, share + (i < extra), t) for i, t in enumerate(config.sharp_temperatures)
                     if share + (i < extra)]


def build_reward_model(sft_model, tokenizer, config: RewardConfig = RewardConfig(), base_model=None,
                       labeler: SimulatedLabeler | None = None, callback=None, progress: bool = True,
                       prompts: list[str] | None = None):
    """Collect comparisons, train the RM from the SFT model's weights, normalise it.

    The K responses per prompt come from `comparison_sources` (the SFT model, some of its answers sharper, and the
    base model); the prompts are those of `config.prompt_splits` (every training split's) unless `prompts` are given (a
    short run on a few). Returns (reward_model, log, comparisons).
    """
    if prompts is None:
        prompts = training_prompts(config.prompt_splits, "RewardConfig.prompt_splits")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("build_reward_model got no prompts to rank: pass a non-empty list, or prompts=None for those "
                         "of RewardConfig.prompt_splits")
    models = comparison_sources(sft_model, base_model, config)
    labeler = labeler or SimulatedLabeler(seed=derive_seed(config.seed, "ranking_labeler"))
    comparisons = collect_comparisons(models, tokenizer, prompts, labeler, temperature=config.temperature,
                                      max_new_tokens=config.max_new_tokens, seed=config.seed, rounds=config.rounds)
    train, heldout = split_heldout(comparisons, config.heldout_fraction, config.seed)
    torch.manual_seed(config.seed)
    reward_model = RewardModel.from_causal_lm(sft_model)
    log = train_reward_model(reward_model, tokenizer, train, config, heldout, callback, progress)
    demos = load_split("sft")
    log["bias"] = normalise_reward(reward_model, tokenizer, list(demos["prompt"]), list(demos["response"]))
    log["heldout"] = heldout
    return reward_model, log, comparisons


def reward_provenance(base: str = "tiny", config: RewardConfig = RewardConfig()) -> dict:
    """What makes a reward model (see `stages.provenance`): its config, the prompts it ranks, the demonstrations
    that set its bias, the SFT model it starts from (runs/sft-{base} as it is now) and the base model that writes
    some answers."""
    ranked = [f"{name}.jsonl" for name in config.prompt_splits if name != "sft"]
    return provenance.expected("rm", config, data=ranked + ["sft.jsonl"],
                               parents={"SFT model": provenance.identity(sft_checkpoint(base)),
                                        "base model": provenance.identity(SHIPPED.get(base, base))})


COMPARISONS_FILE = "comparisons.jsonl"  # beside a saved reward model: every ranking it was built from, one per line


def save_reward_model(reward_model: RewardModel, base: str = "tiny", config: RewardConfig = RewardConfig(),
                      comparisons: list[dict] | None = None):
    """Save a reward model built from runs/sft-{base} with `config` to runs/rm-{base}, with the provenance.json that
    lets `load_or_train_reward_model` (and PPO) reuse it, and the rankings it was built from (all of them, held-out
    ones included: `split_heldout` with the config's seed separates them again), which DPO learns from
    (notebook 07, `load_comparisons`). Returns the folder."""
    path = run_path("rm", base)
    write_provenance = provenance.writer(reward_provenance(base, config))

    def extra(folder):
        write_provenance(folder)
        if comparisons is not None:
            (folder / COMPARISONS_FILE).write_text("".join(json.dumps(c) + "\n" for c in comparisons), encoding="utf-8")

    reward_model.save_pretrained(path, extra=extra)
    return path


def load_or_train_reward_model(base: str = "tiny", config: RewardConfig | None = None, progress: bool = True,
                               sft_config: SFTConfig | None = None):
    """The reward model for `base`: loaded from runs/rm-{base} if it was made from the same settings, else built
    (with `config`, or the defaults) from the SFT model and saved there.

    The SFT model comes first, from `load_or_train_sft(base, sft_config)`; the reward model is reused only if it was
    built from that very SFT checkpoint (its fingerprint), so retraining the SFT model retrains this too. Otherwise
    as `load_or_train_sft`: config=None accepts the settings a notebook saved, anything else that differs retrains
    with one line saying why (rather than raising: runs/ holds nothing the course cannot rebuild).
    """
    strict, config = config is not None, config or RewardConfig()
    sft_model, tokenizer = load_or_train_sft(base, sft_config, progress=progress)
    if provenance.reusable(run_path("rm", base), reward_provenance(base, config), strict):
        return RewardModel.from_pretrained(run_path("rm", base))
    base_model, _ = load_base(base)
    reward_model, _, comparisons = build_reward_model(sft_model, tokenizer, config, base_model, progress=progress)
    save_reward_model(reward_model, base, config, comparisons)
    return reward_model


def load_comparisons(base: str = "tiny", config: RewardConfig | None = None, progress: bool = True,
                     sft_config: SFTConfig | None = None) -> list[dict]:
    """The rankings the reward model in runs/rm-{base} was built from (`save_reward_model` keeps them beside it),
    held-out ones included. The reward model comes first, as `load_or_train_reward_model(base, config)` gives it; a
    folder saved without its rankings (by an older version of the course) is rebuilt, rankings and all."""
    load_or_train_reward_model(base, config, progress=progress, sft_config=sft_config)
    path = run_path("rm", base) / COMPARISONS_FILE
    if not path.exists():
        print(f"{path.parent} has no {COMPARISONS_FILE} (saved before the course kept the rankings): rebuilding the "
              "reward model and its rankings")
        if config is None:  # the settings the folder's reward model was made with (load_or_train just accepted them)
            saved = provenance.read(path.parent)["config"]["RewardConfig"]
            config = RewardConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in saved.items()})
        sft_model, tokenizer = load_or_train_sft(base, sft_config, progress=progress)
        base_model, _ = load_base(base)
        reward_model, _, comparisons = build_reward_model(sft_model, tokenizer, config, base_model, progress=progress)
        save_reward_model(reward_model, base, config, comparisons)
        return comparisons
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        comparisons = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON lines ({error}); delete the folder {path.parent} and run notebook "
                         "03 again (or call load_or_train_reward_model) to rebuild it") from error
    if not comparisons or any(set(c) != {"prompt", "responses", "gold"} for c in comparisons):
        raise ValueError(f"{path} does not hold rankings {{prompt, responses, gold}}; delete {path.parent} and run "
                         "notebook 03 again to rebuild it")
    return comparisons
