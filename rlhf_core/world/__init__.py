"""Layer 1, the mini world: what there is to know (`tasks`), the data made from it (`corpus`, written to data/ by
`python -m rlhf_core.world --out data`), reading that data back (`data`) and the simulated labeler who judges
answers against it (`labeler`). No model appears here: this layer imports only `rlhf_core.common`."""
