"""Stage 3: PPO against the reward model with a per-token KL penalty to the SFT model (InstructGPT eq. 2).

One iteration, CleanRL-style, top to bottom in `PPOTrainer.step` (make_batch = sample, score, advantages; then
update):

    1. rollout   sample a response per prompt from the policy π_RL (dropout off)
    2. score     r_θ(x, y) from the reward model, log π_SFT from the frozen reference, V from the critic
    3. reward    R_t = −β·(log π_RL − log π_SFT) per token, + r_θ(x, y) at the last token   (rlhf_rewards)
    4. GAE       advantages with γ = 1, λ = 0.95, then whitened                            (compute_gae, whiten)
    5. update    a few epochs of minibatches, each one step of the policy on the clipped policy loss
                 (+ γ_ptx · pretraining loss for PPO-ptx; policy_step) and one of the critic on
                 value_coef · the clipped value loss (value_step): two networks, two optimizers; episodes of
                 similar length share a minibatch, which only saves padding (length_grouped_minibatches)
    6. β         the adaptive KL controller moves β towards the KL target (Ziegler et al. 2019)

The value model is a separate network initialised from the reward model (InstructGPT App. C.4), with its head
started at V = 0 (see PPOTrainer.__init__).

Without a critic (`PPOConfig(advantage="rloo", samples_per_prompt=k)`, notebook 07): k answers to each prompt, and
step 4 becomes one line — each answer's return (its score minus its summed KL penalty) minus the mean return of the
prompt's other k − 1 answers (`rloo_advantages`; RLOO, Ahmadian et al. 2024), the same advantage at every token.
Everything else — the per-token KL penalty, the clipped policy loss, the epochs — stays as it is.

What to expect here: our ~1M-parameter reward model learns what shows in the words — the labeler's preferred
style (a plain sentence, not padded, not a bare fragment), answers that stop, insults, refusals — and is near
chance on facts and sums (notebook 03). PPO moves what is global (style, stopping, fewer garbled samples) and
leaves the facts it cannot see. It optimises the proxy it is given: with a larger learning rate or a weaker KL
penalty the reward-model score rises while the gold score falls — reward hacking (Gao et al. 2022).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..common.timing import Stopwatch
from ..evaluate import explained_variance
from ..losses import (AdaptiveKLController, FixedKLController, compute_gae, entropy, masked_mean, ppo_policy_loss,
                      rlhf_rewards, rloo_advantages, value_loss, whiten)
from ..models.heads import RewardModel, ValueModel
from ..models.loading import model_device
from ..models.sequences import (Rollout, forward_response, generate, pack_query_response, random_windows,
                                response_logprobs, token_stream)
from ..world.data import TRAINING_PROMPT_SPLITS, load_split, training_prompts
from ..world.labeler import SimulatedLabeler
from .training import gradient_step


# Which splits' prompts PPO may learn from: the PPO prompts, and those the reward model and SFT already saw --
# never dev or eval, where PPO is measured. The mini world has only ~600 training prompts, and a ~1M-parameter
# policy learns the answers to the prompts it sees often: on the 195 "ppo" prompts alone (each seen ~10 times
# in 1,920 episodes, then the default) PPO's gold on its own prompts climbs well above its gold on dev. With all
# 605 (each seen ~5 times in 2,880) it has to learn what holds for every prompt -- a plain sentence, an answer that
# stops, a sharper choice of answer. Dev and eval gold rise a little (README, "What each setting bought").
# InstructGPT's PPO prompts were a separate set of 31k, more than enough that no prompt repeated much.
PPO_PROMPT_SPLITS = TRAINING_PROMPT_SPLITS


ADVANTAGES = ("gae", "rloo")  # PPOConfig.advantage: GAE with the critic, or the critic-free leave-one-out baseline


@dataclass
class PPOConfig:
    iterations: int = 45           # rollouts of `batch_size` episodes each: 2,880 episodes (InstructGPT: 256k)
    batch_size: int = 64           # episodes (prompts) per rollout
    minibatch_size: int = 16       # episodes per gradient step
    ppo_epochs: int = 2            # passes over each rollout: with final_norm_lr doubled, as good as 4 on dev at half the cost
    lr: float = 1e-5               # policy learning rate (small: our reward model is easy to fool, see below)
    final_norm_lr: float = 4e-2    # learning rate of the final layer norm, the logits' global scale (final_norm_groups)
    value_lr: float = 1e-4         # critic learning rate
    clip_range: float = 0.2        # ε of the clipped policy loss (InstructGPT App. C.4, Ziegler et al.)
    value_clip_range: float = 0.2  # ε of the clipped value loss
    value_coef: float = 0.5        # the critic's loss is scaled by this before its gradient clip (see value_step)
    gamma: float = 1.0             # no discount (InstructGPT App. C.4)
    lam: float = 0.95              # GAE λ (Ziegler et al. 2019)
    init_kl_coef: float = 0.1      # β at the start (InstructGPT: 0.02, with a far better reward model)
    adaptive_kl: bool = True       # adaptive controller (Ziegler et al.) or a fixed β
    kl_target: float = 1.0         # nats per response: our answers are ~10 tokens (Ziegler et al.: 6 nats)
    kl_horizon: int = 2000         # β moves by at most ±20 % per `kl_horizon` episodes (Ziegler et al.: 10 000)
    temperature: float = 1.0       # sampling temperature; log-probs use the same
    max_new_tokens: int = 32
    missing_eos_max_score: float | None = -1.0  # the most a response cut off before its EOS can score (None: no cap)
    value_head_from_rm: bool = False  # False: the critic keeps the RM's body but its head starts at V = 0, see below
    ptx_coef: float = 0.0          # γ of PPO-ptx (InstructGPT eq. 2); 0 is plain PPO
    ptx_batch_size: int = 8        # pretraining windows per gradient step when ptx_coef > 0
    ptx_seq_len: int = 64          # tokens per pretraining window
    ptx_documents: int = 4000      # the first N pretraining documents are the windows' source (enough, and quick)
    max_grad_norm: float = 1.0     # each network's gradient is clipped to this norm before its step
    group_by_length: bool = True   # minibatches of similar-length episodes: less padding (length_grouped_minibatches)
    prompt_splits: tuple[str, ...] = PPO_PROMPT_SPLITS  # the splits whose prompts PPO learns from (ppo_prompts)
    advantage: str = "gae"         # "gae": the critic and GAE (InstructGPT); "rloo": no critic, a leave-one-out baseline
    samples_per_prompt: int = 1    # k answers to each prompt per rollout (consecutive episodes); "rloo" needs k >= 2
    seed: int = 0

    def __post_init__(self):
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage = {self.advantage!r}; use one of {', '.join(map(repr, ADVANTAGES))}")
        k = self.samples_per_prompt
        if k < 1 or self.batch_size % k:
            raise ValueError(f"samples_per_prompt = {k} must be >= 1 and divide batch_size = {self.batch_size}")
        if self.advantage == "rloo" and k < 2:
            raise ValueError("advantage='rloo' compares each answer with the prompt's other answers: set "
                             "samples_per_prompt >= 2 (e.g. 4)")


def ppo_prompts(splits=PPO_PROMPT_SPLITS) -> list[str]:
    """The prompts PPO trains on: every prompt of `splits`, in file order (PPOTrainer shuffles them)."""
    return training_prompts(splits, "PPOConfig.prompt_splits")


@dataclass
class RolloutBatch:
    """Everything one iteration learns from (B episodes, T response tokens)."""

    rollout: Rollout               # tokens, mask, and the sampling log-probs (old log π)
    ref_logprobs: torch.Tensor     # (B, T) log π_SFT
    values: torch.Tensor           # (B, T) V from the critic at rollout time
    scores: torch.Tensor           # (B,) reward-model scores (cut-off responses capped)
    rewards: torch.Tensor          # (B, T) per-token RLHF reward
    advantages: torch.Tensor       # (B, T) whitened GAE advantages
    returns: torch.Tensor          # (B, T) value targets


def length_grouped_minibatches(lengths: torch.Tensor, minibatch_size: int, generator: torch.Generator,
                               group_by_length: bool = True) -> list[torch.Tensor]:
    """One epoch's minibatches: index tensors that together hold every episode exactly once, in random order.

    With group_by_length, episodes of similar length (prompt + response tokens, `lengths` (B,)) share a
    minibatch: a forward/backward pass costs in proportion to its longest row, so grouping roughly halves the
    padding the PPO epochs compute (HF's `group_by_length` does the same for fine-tuning). Which episodes share
    a minibatch then depends on length (ties in random order); the minibatches are visited in random order.
    Without it, a plain random permutation cut into minibatches, as in most PPO code.
    """
    lengths = lengths.cpu()  # the order is drawn on the CPU, as the generator is: the same minibatches on any device
    order = torch.randperm(len(lengths), generator=generator)
    if group_by_length:
        order = order[lengths[order].argsort(stable=True)]  # by length; equal lengths keep their random order
    minibatches = list(order.split(minibatch_size))
    if group_by_length:
        minibatches = [minibatches[i] for i in torch.randperm(len(minibatches), generator=generator).tolist()]
    return minibatches


def in_length_chunks(fn, rollout: Rollout, rows: int) -> tuple[torch.Tensor, ...]:
    """fn(rollout) -> tensors of shape (b,) or (b, T), 0 on padding, computed on chunks of `rows` episodes of
    similar length, each cut to its own longest response, and put back in the rollout's row order and width.

    A pass costs in proportion to its rows times its longest row. A 64-episode rollout mixes short answers with a
    few that run to max_new_tokens, so one pass over it computes much padding; sorted by length and cut to each
    chunk's own width, the same episodes cost less (README, *Speed*). The numbers agree with one pass's to ~1e-6:
    another matrix shape adds in another order, so they are not the same to the last bit. The reward model's
    ranking batches do the same with `models.sequences.score_in_length_chunks`, for a single (B,) score."""
    lengths = rollout.query_mask.long().sum(1) + rollout.response_mask.long().sum(1)  # (B,) real tokens
    B, T = rollout.response_ids.shape
    out = None
    for chunk in lengths.argsort(stable=True).split(rows):
        part = rollout[chunk]
        width = max(1, int(part.response_mask.long().sum(1).max()))  # the chunk's longest response
        part = Rollout(part.query_ids, part.query_mask, part.response_ids[:, :width], part.response_mask[:, :width],
                       part.logprobs[:, :width])
        results = fn(part)
        if out is None:
            out = tuple(torch.zeros((B, T)[:r.dim()], dtype=r.dtype, device=r.device) for r in results)
        for whole, result in zip(out, results):
            if result.dim() == 1:
                whole[chunk] = result          # (b,) -> rows of (B,)
            else:
                whole[chunk, :width] = result  # (b, width) -> rows of (B, T), zeros beyond
    return out


def final_norm_groups(policy, config: PPOConfig) -> list[dict]:
    """Adam's parameter groups for the policy: every weight at config.lr, the final layer norm at config.final_norm_lr.

    Why a group of its own. GPT-2's logits are (g ⊙ x̂ + b) Wᵀ, with x̂ the normalised last hidden state: multiplying
    the final layer norm's gain g and bias b by c is sampling at temperature 1/c, for every prompt at once. Adam
    moves each weight by about its learning rate per step, whatever the gradient's size, so at lr 1e-5 the 240
    steps of a course run can change g (about 1.5 after SFT) by at most 0.2 %: PPO could only sharpen the policy
    token by token, context by context. With these 2·d weights at a larger rate it can also learn the one global
    change a tiny model's samples need most — fewer unlikely tail tokens — in the same episodes. It is still PPO:
    the same loss, the same KL penalty; only the step size of 2·d of the policy's weights differs. For the same
    reason the rate goes with the number of steps: halving ppo_epochs needed final_norm_lr doubled
    (data/results/README.md, the dev record).
    """
    norm = getattr(getattr(policy, "transformer", None), "ln_f", None)  # GPT-2's final layer norm
    if norm is None:
        if config.final_norm_lr != config.lr:
            raise ValueError(f"{type(policy).__name__} has no transformer.ln_f (GPT-2's final layer norm), so "
                             f"final_norm_lr = {config.final_norm_lr} cannot apply; set final_norm_lr = lr")
        return [{"params": list(policy.parameters()), "lr": config.lr}]
    own = {id(p) for p in norm.parameters()}
    return [{"params": [p for p in policy.parameters() if id(p) not in own], "lr": config.lr},
            {"params": list(norm.parameters()), "lr": config.final_norm_lr}]


def initial_value_model(reward_model: RewardModel, config: PPOConfig = PPOConfig()) -> ValueModel:
    """The critic PPOTrainer starts from: the reward model's body, and (unless config.value_head_from_rm) its head
    at V = 0.

    The RM's head was trained only at the last token; at earlier positions its outputs are arbitrary (±5 here),
    and those values would drown the advantages. So keep the RM's body and start the head at V = 0, the
    normalised score of a demonstration (InstructGPT App. C.4 initialises the value function from the RM).
    """
    value_model = ValueModel.from_reward_model(reward_model)
    if not config.value_head_from_rm:
        torch.nn.init.zeros_(value_model.head.weight)
        torch.nn.init.zeros_(value_model.head.bias)
    return value_model


class PPOTrainer:
    """Holds the four models of RLHF — policy, frozen reference, reward model, critic — and runs iterations."""

    def __init__(self, policy, tokenizer, reward_model: RewardModel, config: PPOConfig = PPOConfig(),
                 prompts: list[str] | None = None, labeler: SimulatedLabeler | None = None,
                 ref_model=None, value_model: ValueModel | None = None, pretrain_stream: torch.Tensor | None = None):
        self.config = config
        self.tokenizer = tokenizer
        # The policy trains; the reference is a frozen copy. (A deepcopy of a frozen model is frozen too,
        # so switch the policy's gradients on explicitly rather than inherit them.)
        self.policy = policy.requires_grad_(True)
        self.ref_model = (ref_model or copy.deepcopy(policy)).eval().requires_grad_(False)
        if any(p is q for p in self.policy.parameters() for q in self.ref_model.parameters()):
            raise ValueError("the policy and the reference model share parameters; pass copy.deepcopy(sft) as the "
                             "policy and the SFT model itself as ref_model")
        self.reward_model = reward_model.eval().requires_grad_(False)
        self.critic_free = config.advantage != "gae"
        if self.critic_free and value_model is not None:
            raise ValueError(f"advantage={config.advantage!r} has no critic; leave value_model out")
        self.value_model = None if self.critic_free else (value_model if value_model is not None
                                                          else initial_value_model(reward_model, config))
        self.labeler = labeler or SimulatedLabeler(seed=config.seed)
        self.prompts = prompts if prompts is not None else ppo_prompts(config.prompt_splits)
        self.kl_controller = (AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
                              if config.adaptive_kl else FixedKLController(config.init_kl_coef))
        # fused: one kernel updates every parameter (a few % of an iteration on a small model)
        self.policy_optimizer = torch.optim.Adam(final_norm_groups(self.policy, config), eps=1e-5, fused=True)
        if not self.critic_free:
            self.value_model.requires_grad_(True)
            self.value_optimizer = torch.optim.Adam(self.value_model.parameters(), lr=config.value_lr, eps=1e-5,
                                                    fused=True)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pretrain_stream = pretrain_stream
        if config.ptx_coef > 0 and pretrain_stream is None:
            self.pretrain_stream = token_stream(tokenizer, list(load_split("pretrain")["text"][:config.ptx_documents]))
        self._order: list[int] = []
        self.iteration = 0

    def next_prompts(self) -> list[str]:
        """The next batch_size prompts, cycling through shuffled passes over the PPO prompts; with
        samples_per_prompt = k, batch_size / k prompts, each k times in a row."""
        k = self.config.samples_per_prompt
        batch = []
        while len(batch) < self.config.batch_size:
            if not self._order:
                self._order = torch.randperm(len(self.prompts), generator=self.generator).tolist()
            batch.extend([self.prompts[self._order.pop()]] * k)
        return batch

    @torch.no_grad()
    def make_batch(self, prompts: list[str]) -> tuple[RolloutBatch, list[str]]:
        """Steps 1–4: sample, score, per-token rewards and advantages. Returns the batch and the response texts."""
        rollout = self.sample(prompts)
        ref_logprobs, scores, values = self.score(rollout)
        return self.advantages(rollout, ref_logprobs, scores, values), rollout.texts(self.tokenizer)

    @torch.no_grad()
    def sample(self, prompts: list[str]) -> Rollout:
        """Step 1: one response per prompt from the policy, with the log-probs it was sampled with."""
        c = self.config
        return generate(self.policy, self.tokenizer, prompts, max_new_tokens=c.max_new_tokens,
                        temperature=c.temperature, generator=self.generator)

    @torch.no_grad()
    def score(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 2: log π_SFT per token (B, T), the reward model's score (B,), the critic's values (B, T).

        Computed on chunks of `minibatch_size` episodes of similar length (`in_length_chunks`), as the PPO epochs
        group them: each pass then computes little padding."""
        return in_length_chunks(self.score_chunk, rollout, self.config.minibatch_size)

    def score_chunk(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 2 on some episodes (B of them): three passes over the same prompt + answer tokens."""
        q, qm, r, mask = rollout.query_ids, rollout.query_mask, rollout.response_ids, rollout.response_mask
        ref_logprobs = response_logprobs(self.ref_model, q, qm, r, mask, self.config.temperature)  # (B, T)
        scores = self.reward_model(*pack_query_response(q, qm, r, mask)[:2])                         # (B,)
        if self.config.missing_eos_max_score is not None:  # the reward model never saw an unfinished answer
            cut_off = ~rollout.ended_with_eos(self.tokenizer.eos_token_id)                          # (B,)
            scores = torch.where(cut_off, scores.clamp(max=self.config.missing_eos_max_score), scores)
        values = (torch.zeros(mask.shape, device=mask.device) if self.critic_free
                  else self.value_model.response_values(q, qm, r, mask))                             # (B, T)
        return ref_logprobs, scores, values

    @torch.no_grad()
    def advantages(self, rollout: Rollout, ref_logprobs: torch.Tensor, scores: torch.Tensor,
                   values: torch.Tensor) -> RolloutBatch:
        """Steps 3–4: per-token rewards with the KL penalty, then GAE advantages (whitened) and returns."""
        c, mask = self.config, rollout.response_mask
        rewards = rlhf_rewards(scores, rollout.logprobs, ref_logprobs, mask, self.kl_controller.value)  # (B, T)
        if self.critic_free:  # RLOO: the return of the whole answer against the prompt's other answers
            advantages = rloo_advantages(rewards.sum(1), c.samples_per_prompt)[:, None].expand_as(rewards)  # (B, T)
            returns = rewards.flip(1).cumsum(1).flip(1)  # the reward-to-go (γ = 1); no critic learns from it
        else:
            advantages, returns = compute_gae(rewards, values, mask, c.gamma, c.lam)               # (B, T)
        advantages = whiten(advantages, mask)
        return RolloutBatch(rollout, ref_logprobs, values, scores, rewards, advantages, returns)

    def ptx_loss(self) -> torch.Tensor:
        """−log π_RL on pretraining text: the γ·E_pretrain[log π_RL(x)] term of InstructGPT eq. 2, as a loss."""
        c = self.config
        windows = random_windows(self.pretrain_stream, c.ptx_batch_size, c.ptx_seq_len, self.generator)
        windows = windows.to(model_device(self.policy))                                    # (b, ptx_seq_len)
        return self.policy(input_ids=windows, attention_mask=torch.ones_like(windows), labels=windows).loss

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Step 5: PPO epochs over minibatches. Each minibatch moves the policy by its loss, then the critic by its
        own: two networks, two optimizers, two losses (as in Spinning Up's PPO), so neither loss needs a weight
        against the other. Returns the mean of each statistic."""
        c = self.config
        stats: dict[str, list[float]] = {}
        # Dropout stays off in RL (Huang et al.): eval mode, gradients still flow. Otherwise log π at update
        # time would differ from log π at sampling time even before the first step, and ρ ≠ 1.
        self.policy.eval()
        if not self.critic_free:
            self.value_model.eval()
        lengths = batch.rollout.query_mask.sum(1) + batch.rollout.response_mask.sum(1)  # (B,) real tokens
        for _ in range(c.ppo_epochs):
            for idx in length_grouped_minibatches(lengths, c.minibatch_size, self.generator, c.group_by_length):
                step_stats = self.policy_step(batch, idx)
                if not self.critic_free:
                    step_stats |= self.value_step(batch, idx)
                for name, value in step_stats.items():
                    stats.setdefault(name, []).append(value)
        return {name: sum(values) / len(values) for name, values in stats.items()}

    def policy_step(self, batch: RolloutBatch, idx: torch.Tensor) -> dict[str, float]:
        """One gradient step of the policy on minibatch `idx`: the clipped policy loss (+ γ_ptx · the pretraining
        loss for PPO-ptx, InstructGPT eq. 2)."""
        c, mb = self.config, batch.rollout[idx]
        logprobs, logits = forward_response(self.policy, mb.query_ids, mb.query_mask, mb.response_ids,
                                            mb.response_mask, c.temperature)              # (b, T), (b, T, V)
        loss, pg_stats = ppo_policy_loss(logprobs, mb.logprobs, batch.advantages[idx], mb.response_mask,
                                         c.clip_range)
        stats = {"policy/loss": loss.item(), "policy/clipfrac": pg_stats["clipfrac"],
                 "policy/approx_kl": pg_stats["approx_kl"],
                 "policy/entropy": masked_mean(entropy(logits.detach()), mb.response_mask).item()}
        if c.ptx_coef > 0:
            ptx = self.ptx_loss()
            loss = loss + c.ptx_coef * ptx
            stats["ppo/ptx_loss"] = ptx.item()
        gradient_step(loss, self.policy, self.policy_optimizer, f"PPO iteration {self.iteration}",
                      f"lower PPOConfig.lr (now {c.lr}) or raise init_kl_coef", c.max_grad_norm)
        return stats

    def value_step(self, batch: RolloutBatch, idx: torch.Tensor) -> dict[str, float]:
        """One gradient step of the critic on minibatch `idx`: the clipped value loss towards the GAE returns.

        value_coef scales the loss, as in PPO with one optimizer for both networks (CleanRL's vf_coef). Here the
        critic has an Adam of its own, which ignores a constant scale, so value_coef acts only through the gradient
        clip: the critic follows its gradient unclipped up to a norm of max_grad_norm / value_coef (2 at the
        defaults). That matters early, while V catches up with the returns: without it (1.0) PPO's win over SFT
        was 2 points lower over five seeds (README, "What each setting bought").
        """
        c, mb = self.config, batch.rollout[idx]
        values = self.value_model.response_values(mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask)
        loss, vf_stats = value_loss(values, batch.values[idx], batch.returns[idx], mb.response_mask,
                                    c.value_clip_range)
        gradient_step(c.value_coef * loss, self.value_model, self.value_optimizer,
                      f"PPO iteration {self.iteration} (critic)", f"lower PPOConfig.value_lr (now {c.value_lr})",
                      c.max_grad_norm)
        return {"value/loss": loss.item(), "value/clipfrac": vf_stats["clipfrac"]}

    def step(self) -> tuple[dict[str, float], list[tuple[str, str, dict]]]:
        """One PPO iteration. Returns (metrics, samples) — samples are (prompt, response, {score, gold})."""
        stopwatch = Stopwatch()
        prompts = self.next_prompts()
        batch, texts = self.make_batch(prompts)
        mask = batch.rollout.response_mask
        kl = batch.rollout.kl_per_response(batch.ref_logprobs)                             # (B,)
        gold = torch.tensor([self.labeler.score(p, r) for p, r in zip(prompts, texts)])
        kl_coef = self.kl_controller.value
        metrics = {
            "objective/score": batch.scores.mean().item(),
            "objective/gold": gold.mean().item(),
            "objective/kl": kl.mean().item(),
            "objective/kl_coef": kl_coef,
            "objective/total": (batch.scores - kl_coef * kl).mean().item(),
            "objective/length": mask.sum(1).float().mean().item(),
        }
        if not self.critic_free:  # how well the critic predicted this rollout's returns, before it learns from them
            metrics["value/explained_variance"] = explained_variance(batch.values, batch.returns, mask)
        metrics |= self.update(batch)
        self.kl_controller.update(kl.mean().item(), len(prompts))
        metrics["time/iteration"] = stopwatch.seconds()
        self.iteration += 1
        samples = [(p, r, {"score": round(s, 2), "gold": round(g, 2)})
                   for p, r, s, g in zip(prompts, texts, batch.scores.tolist(), gold.tolist())]
        return metrics, samples

    def train(self, iterations: int | None = None, callback=None, progress: bool = True) -> dict[str, list]:
        """Run iterations; callback(iteration, metrics, samples) after each. Returns the history of metrics."""
        from tqdm.auto import tqdm

        history: dict[str, list] = {"iteration": []}
        for _ in tqdm(range(iterations or self.config.iterations), desc="PPO", disable=not progress):
            metrics, samples = self.step()
            history["iteration"].append(self.iteration - 1)
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            history.setdefault("samples", []).append(samples[:8])
            if callback is not None:
                callback(self.iteration - 1, metrics, samples)
        return history
