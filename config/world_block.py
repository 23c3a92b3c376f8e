# The small world with block diffusion from scratch (blocks of 4, Stable-DiffCoder). The [x_t ; x_0]
# layout doubles the tokens of a forward, so batch 4 keeps the forward tokens of config/world.py.
#   python train.py config/world_block.py
from config.world import *  # noqa: F403

out_dir = 'out-world-block'
objective = 'block'
block_size = 4
batch_size = 4
block_warmup_iters = 200
