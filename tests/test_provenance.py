"""Checkpoints know what made them: the loaders reuse runs/ only for the same settings, and an interrupted
training leaves runs/ as it was. Real (tiny) runs of every stage, in a runs/ folder of the test's own."""
import copy
import hashlib
import json
import shutil

import pytest
import torch

from rlhf_core import SimulatedLabeler
from rlhf_core.common import paths
from rlhf_core.common.paths import run_path
from rlhf_core.stages import ppo, ppo_runs, provenance, reward, sft
from rlhf_core.stages.ppo import PPOConfig
from rlhf_core.stages.ppo_runs import load_or_train_ppo
from rlhf_core.stages.reward import RewardConfig, load_or_train_reward_model
from rlhf_core.stages.sft import SFTConfig, load_or_train_sft

TINY_SFT = SFTConfig(epochs=1, batch_size=64)
TINY_RM = RewardConfig(k=2, k_from_base=0, k_sharp=0, rounds=1, epochs=1, batch_size=64, max_new_tokens=8,
                       prompt_splits=("rm",))
TINY_PPO = PPOConfig(iterations=1, batch_size=4, minibatch_size=4, ppo_epochs=1, max_new_tokens=8)


def tiny_chain():
    """SFT, reward model and PPO policy, each at its tiny settings (trained or reused)."""
    return load_or_train_ppo("tiny", TINY_PPO, progress=False, sft_config=TINY_SFT, reward_config=TINY_RM)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """A runs/ folder with all three tiny checkpoints, trained once for the module."""
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paths, "RUNS_DIR", runs)
        tiny_chain()
    return runs


@pytest.fixture
def runs(trained_runs, tmp_path, monkeypatch):
    """A copy of the trained runs/ that the loaders use for this test."""
    copy = tmp_path / "runs"
    shutil.copytree(trained_runs, copy)
    monkeypatch.setattr(paths, "RUNS_DIR", copy)
    return copy


@pytest.fixture
def trained(monkeypatch):
    """The stages that trained during the test, in order ("sft", "rm", "ppo")."""
    stages = []

    def spy(module, name, stage):
        original = getattr(module, name)
        def recording(*args, **kwargs):
            stages.append(stage)
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, recording)

    spy(sft, "train_sft", "sft")
    spy(reward, "build_reward_model", "rm")
    spy(ppo.PPOTrainer, "train", "ppo")
    return stages


def snapshot(folder):
    """Every file under `folder` (hidden temporaries too) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_checkpoint_records_what_made_it(runs):
    records = {stage: provenance.read(run_path(stage, "tiny")) for stage in ("sft", "rm", "ppo")}
    assert records["sft"]["config"] == {"SFTConfig": TINY_SFT.__dict__}
    assert set(records["sft"]["data"]) == {"sft.jsonl"} and set(records["rm"]["data"]) == {"rm.jsonl", "sft.jsonl"}
    assert records["sft"]["course_version"] == provenance.COURSE_VERSION
    assert records["rm"]["parents"]["SFT model"] == records["sft"]["fingerprint"]
    assert records["ppo"]["parents"]["reward model"] == records["rm"]["fingerprint"]
    assert set(records["rm"]["weights"]) == {"model.safetensors", "head.safetensors"}


def test_the_same_settings_reuse_every_stage(runs, trained, capsys):
    before = snapshot(runs)
    policy, tokenizer = tiny_chain()
    assert trained == [] and capsys.readouterr().out == ""
    assert snapshot(runs) == before


def test_a_changed_setting_retrains_and_says_which(runs, trained, capsys):
    load_or_train_sft("tiny", SFTConfig(epochs=1, batch_size=32), progress=False)
    assert trained == ["sft"]
    assert "SFTConfig.batch_size: 64 there, 32 here" in capsys.readouterr().out
    assert provenance.read(run_path("sft", "tiny"))["config"]["SFTConfig"]["batch_size"] == 32


def test_without_a_config_the_saved_choice_is_reused_and_named(runs, trained, capsys):
    load_or_train_sft("tiny", progress=False)  # what notebooks 03-06 call, after notebook 02 saved its own model
    assert trained == []
    assert "SFTConfig.epochs: 1 there, 16 here" in capsys.readouterr().out


def test_a_new_course_version_retrains(runs, trained, capsys, monkeypatch):
    monkeypatch.setattr(provenance, "COURSE_VERSION", "next")
    load_or_train_sft("tiny", TINY_SFT, progress=False)
    assert trained == ["sft"] and "course_version" in capsys.readouterr().out


def test_changed_data_makes_a_checkpoint_stale(runs, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(provenance.DATA_DIR, data, ignore=shutil.ignore_patterns("base-*"))
    with open(data / "sft.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "Human: Hi\nAssistant:", "response": " Hello.", "family": "chat"}) + "\n")
    monkeypatch.setattr(provenance, "DATA_DIR", data)
    assert not provenance.reusable(run_path("sft", "tiny"), sft.sft_provenance("tiny", TINY_SFT))
    assert "data/sft.jsonl has changed" in capsys.readouterr().out


def test_a_checkpoint_from_before_provenance_is_retrained_with_a_message(runs, trained, capsys):
    (run_path("sft", "tiny") / provenance.FILE).unlink()  # as save_checkpoint wrote it before this change
    load_or_train_sft("tiny", TINY_SFT, progress=False)
    assert trained == ["sft"]
    assert "sft-tiny: no readable provenance.json" in capsys.readouterr().out
    assert provenance.reusable(run_path("sft", "tiny"), sft.sft_provenance("tiny", TINY_SFT))


def test_a_retrained_sft_model_makes_the_reward_model_and_policy_stale(runs, trained, capsys):
    other_sft = SFTConfig(epochs=1, batch_size=64, seed=1)
    load_or_train_ppo("tiny", TINY_PPO, progress=False, sft_config=other_sft, reward_config=TINY_RM)
    assert trained == ["sft", "rm", "ppo"]
    out = capsys.readouterr().out
    assert "rm-tiny was made from other settings (the SFT model it started from has changed)" in out
    assert "ppo-tiny was made from other settings (the SFT model it started from has changed; " \
           "the reward model it started from has changed)" in out
    fingerprint = provenance.read(run_path("sft", "tiny"))["fingerprint"]
    assert provenance.read(run_path("ppo", "tiny"))["parents"]["SFT model"] == fingerprint


def interrupt(monkeypatch, module, name, after: int = 1):
    """Make module.name raise KeyboardInterrupt on its call number `after` + 1, as Ctrl-C in mid-training would."""
    original, calls = getattr(module, name), []
    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, interrupted)


@pytest.mark.parametrize("stage", ["sft", "rm", "ppo"])
def test_an_interrupted_training_leaves_runs_as_it_was_and_the_next_call_trains(stage, runs, trained, monkeypatch):
    other = {"sft": lambda: load_or_train_sft("tiny", SFTConfig(epochs=2, batch_size=64), progress=False),
             "rm": lambda: load_or_train_reward_model("tiny", RewardConfig(**{**TINY_RM.__dict__, "seed": 1}),
                                                      progress=False, sft_config=TINY_SFT),
             "ppo": lambda: load_or_train_ppo("tiny", PPOConfig(**{**TINY_PPO.__dict__, "iterations": 2}),
                                              progress=False, sft_config=TINY_SFT, reward_config=TINY_RM)}[stage]
    before = snapshot(runs)
    with monkeypatch.context() as patch:  # Ctrl-C after the first optimizer step (PPO: in its first update)
        if stage == "ppo":
            interrupt(patch, ppo.PPOTrainer, "update", after=0)
        else:
            interrupt(patch, {"sft": sft, "rm": reward}[stage], "gradient_step")
        with pytest.raises(KeyboardInterrupt):
            other()
    assert snapshot(runs) == before  # the old checkpoint intact, nothing half-written beside it
    trained.clear()
    other()
    assert trained == [stage]
    other()
    assert trained == [stage], "the checkpoint trained after the interruption was not reused"


def test_a_saved_ppo_run_reads_back_as_the_policies_and_history_training_gives(runs):
    """Notebook 04 saves its PPO run with copies of the policy on the way; notebook 07 reads it back instead of training
    the same run again, so each copy must be the policy a run trained the way notebook 07 trains — in segments, after
    other draws from torch's global generator, with a critic and a labeler of its own — has at that iteration."""
    config = PPOConfig(**{**TINY_PPO.__dict__, "iterations": 3})
    sft_model, tokenizer = load_or_train_sft("tiny", TINY_SFT, progress=False)
    reward_model = load_or_train_reward_model("tiny", TINY_RM, progress=False, sft_config=TINY_SFT)
    first = ppo.PPOTrainer(copy.deepcopy(sft_model), tokenizer, reward_model, config, ref_model=sft_model)
    snapshots = {}
    history = first.train(progress=False, callback=lambda i, metrics, samples: snapshots.update(
        {i + 1: copy.deepcopy(first.policy)} if i + 1 in (1, 2) else {}))
    ppo_runs.save_ppo(first.policy, tokenizer, "tiny", config, history=history, snapshots=snapshots)

    policies, saved_history = ppo_runs.load_ppo_run("tiny", config, [1, 2, 3])
    assert sorted(policies) == [1, 2, 3]
    torch.manual_seed(123)
    torch.rand(5)
    second = ppo.PPOTrainer(copy.deepcopy(sft_model), tokenizer, reward_model, config, ref_model=sft_model,
                            value_model=ppo.initial_value_model(reward_model, config), labeler=SimulatedLabeler(seed=7))
    trained = {}
    for stop in (1, 2, 3):
        for key, values in second.train(stop - second.iteration, progress=False).items():
            trained.setdefault(key, []).extend(values)
        weights, expected = policies[stop].state_dict(), second.policy.state_dict()
        assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights), stop
    assert not torch.equal(policies[1].state_dict()["transformer.ln_f.weight"],
                           policies[3].state_dict()["transformer.ln_f.weight"])  # the copies are of different moments
    assert saved_history.keys() == trained.keys() - {"samples"}
    assert all(saved_history[k] == trained[k] for k in saved_history if k != "time/iteration")

    # What it does not give back: a run with other settings, an iteration it kept no copy of, a run without its history.
    assert ppo_runs.load_ppo_run("tiny", PPOConfig(**{**config.__dict__, "seed": 1}), [1]) is None
    assert ppo_runs.load_ppo_run("tiny", config, [3]) is not None and ppo_runs.load_ppo_run("tiny", config, [1, 4]) is None
    ppo_runs.save_ppo(first.policy, tokenizer, "tiny", config)
    assert ppo_runs.load_ppo_run("tiny", config, [3]) is None
