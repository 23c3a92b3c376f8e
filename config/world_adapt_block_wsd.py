# The small world, AR -> block-4 diffusion with LLaDA 2.0's block-size warm-up: the blocks grow from 1 token
# (next-token prediction, the AR source's own task, through the logit shift) to 2 and then 4 over the first
# half of the 500 adaptation iterations, so the AR skill is carried into the block model step by step.
#   python train.py config/world_adapt_block_wsd.py
from config.world_adapt_block import *  # noqa: F403

out_dir = 'out-world-adapt-block-wsd'
block_schedule = '1@0,2@0.25,4@0.5'
