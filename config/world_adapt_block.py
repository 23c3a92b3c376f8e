# The small world, AR -> block diffusion (blocks of 4): out-world-ar2000 + 500 iterations at batch 4
# (the forward tokens of the other arms), the logit shift on.
#   python train.py config/world_adapt_block.py
from config.world_adapt import *  # noqa: F403

out_dir = 'out-world-adapt-block'
objective = 'block'
block_size = 4
batch_size = 4
