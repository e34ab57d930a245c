"""The bottom layer: small mechanisms every other layer uses (paths, atomic writes, seeds, train/eval mode, timing).

It knows nothing of the course's world, models or stages, and imports nothing from the rest of rlhf_core.
"""
