"""A PPO run kept in runs/ and used again: what made it (its provenance), saving it with its history and snapshots,
reading it back, and `load_or_train_ppo`, which the notebooks call for "notebook 04's PPO policy" and which trains it
(from the SFT model and reward model it loads or trains first) when runs/ holds none made the same way."""
from __future__ import annotations

import copy
import json

import safetensors.torch
import torch

from ..common.paths import run_path
from ..models.heads import LabelerReward
from ..models.loading import load_base, model_device, save_checkpoint
from . import provenance
from .ppo import PPOConfig, PPOTrainer, initial_value_model
from .reward import load_or_train_reward_model
from .sft import load_or_train_sft


def train_ppo_run(sft, tokenizer, reward, reward_model, config: PPOConfig, labeler=None, progress: bool = True):
    """PPO from the SFT model, made as every published run is: torch's global seed set to config.seed, the policy a
    copy of `sft` and `sft` itself the frozen reference, the critic from `reward_model`'s body (none for a critic-free
    config), `reward` what PPO climbs (the reward model itself, or `LabelerReward` for the ceiling run). The pipeline,
    `load_or_train_ppo` and benchmarks/dev_levers.py all train through here. Returns (trainer, its history)."""
    torch.manual_seed(config.seed)
    critic = initial_value_model(reward_model, config) if config.advantage == "gae" else None
    trainer = PPOTrainer(copy.deepcopy(sft), tokenizer, reward, config, ref_model=sft, value_model=critic,
                         labeler=labeler)
    return trainer, trainer.train(progress=progress)


def ppo_provenance(base: str = "tiny", config: PPOConfig = PPOConfig(), perfect_reward: bool = False) -> dict:
    """What makes a PPO policy (see `stages.provenance`): its config, the PPO prompts (and the pretraining text for
    PPO-ptx), the SFT model and reward model it starts from (runs/sft-{base}, runs/rm-{base} as they are now) and
    which reward it climbed (the reward model, or the labeler itself)."""
    data = [f"{name}.jsonl" for name in config.prompt_splits] + (["pretrain.jsonl"] if config.ptx_coef > 0 else [])
    parents = {"SFT model": provenance.identity(run_path("sft", base)),
               "reward model": provenance.identity(run_path("rm", base))}  # the critic starts from it either way
    return provenance.expected("ppo", config, data, parents, reward="labeler" if perfect_reward else "reward model")


RUN_FILES = ("history.json", "policy-after-{}.safetensors")  # a saved run: its metrics; the policy after i iterations


def save_ppo(policy, tokenizer, base: str = "tiny", config: PPOConfig = PPOConfig(), name: str = "ppo",
             perfect_reward: bool = False, history: dict | None = None, snapshots: dict | None = None):
    """Save a policy trained from runs/sft-{base} and runs/rm-{base} with `config` to runs/{name}-{base}, with the
    provenance.json that lets `load_or_train_ppo` reuse it. Returns the folder. With the run's `history` (from
    PPOTrainer.train, less its answers) and `snapshots` ({i: a copy of the policy after i iterations}) the run goes
    in too, for `load_ppo_run`: notebook 07 reads notebook 04's run back instead of training it again."""
    write_record = provenance.writer(ppo_provenance(base, config, perfect_reward))

    def write_run(folder) -> None:
        if history is not None:
            metrics = {key: values for key, values in history.items() if key != "samples"}
            (folder / RUN_FILES[0]).write_text(json.dumps(metrics) + "\n", encoding="utf-8")
        for i, snapshot in (snapshots or {}).items():
            safetensors.torch.save_model(snapshot, str(folder / RUN_FILES[1].format(i)))  # tied weights stored once
        write_record(folder)

    return save_checkpoint(policy, tokenizer, run_path(name, base), extra=write_run)


def load_ppo_run(base: str = "tiny", config: PPOConfig = PPOConfig(), iterations=(), name: str = "ppo",
                 perfect_reward: bool = False):
    """The run `save_ppo` kept in runs/{name}-{base} if made with `config` from the SFT model and reward model there now:
    ({i: the policy after i iterations} for i in `iterations`, history); else None, with a line saying why if there is
    another. Training again would give the same weights on the same machine and threads (the trainer's own generator)."""
    path = run_path(name, base)
    if not provenance.reusable(path, ppo_provenance(base, config, perfect_reward), strict=True):
        return None
    files = {i: path / ("model.safetensors" if i == config.iterations else RUN_FILES[1].format(i)) for i in iterations}
    history = provenance.read(path, RUN_FILES[0])
    missing = [f.name for f in files.values() if not f.is_file()]
    if not isinstance(history, dict) or len(history.get("iteration", [])) != config.iterations or missing:
        print(f"{path.parent.name}/{path.name} holds the policy but not its whole run ({', '.join(missing) or RUN_FILES[0]}"
              f" missing or incomplete): training it again")
        return None
    policies = {i: load_base(str(path))[0] for i in iterations}
    for i, policy in policies.items():
        if files[i].name != "model.safetensors":
            safetensors.torch.load_model(policy, str(files[i]), device=str(model_device(policy)))
    return policies, history


def load_or_train_ppo(base: str = "tiny", config: PPOConfig | None = None, name: str = "ppo", progress: bool = True,
                      perfect_reward: bool = False, sft_config=None, reward_config=None):
    """A PPO policy for `base`: loaded from runs/{name}-{base} if it was made from the same settings (notebook 04
    saves runs/ppo-tiny and runs/ppo-perfect-tiny), else trained from the SFT model with `config` (or the defaults)
    and saved there — against the reward model, or with `perfect_reward` against the labeler itself (LabelerReward;
    the critic still starts from the reward model's body). Returns (policy, tokenizer).

    SFT model and reward model come first, from `load_or_train_sft(base, sft_config)` and
    `load_or_train_reward_model(base, reward_config, sft_config=sft_config)`; the policy is reused only if it was
    trained from those very checkpoints, so retraining either retrains this too. Otherwise as `load_or_train_sft`:
    config=None accepts the settings a notebook saved, anything else that differs retrains with one line saying why
    (rather than raising: runs/ holds nothing the course cannot rebuild).
    """
    strict, config = config is not None, config or PPOConfig()
    sft, tokenizer = load_or_train_sft(base, sft_config, progress=progress)
    reward_model = load_or_train_reward_model(base, reward_config, progress=progress, sft_config=sft_config)
    if provenance.reusable(run_path(name, base), ppo_provenance(base, config, perfect_reward), strict):
        return load_base(str(run_path(name, base)))
    reward = LabelerReward(tokenizer) if perfect_reward else reward_model
    trainer, _ = train_ppo_run(sft, tokenizer, reward, reward_model, config, progress=progress)
    save_ppo(trainer.policy, tokenizer, base, config, name, perfect_reward)
    return trainer.policy.eval(), tokenizer
