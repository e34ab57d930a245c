"""Layer 4, the training stages: pretraining (stage 0), SFT, the reward model, PPO, and DPO beyond it, each with its
config dataclass and its load-or-train helper; `training` holds the optimizer step they share and `provenance`
the record that lets a later run reuse a checkpoint. A stage may import an earlier stage, never a later one."""
