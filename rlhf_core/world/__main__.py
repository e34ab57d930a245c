"""python -m rlhf_core.world --out data: regenerate the mini world's splits (see rlhf_core.world.corpus)."""
from .corpus import main

main()
