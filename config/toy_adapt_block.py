# AR -> block diffusion adaptation (Stable-DiffCoder, Fast-dLLM v2, SDAR): config/toy_adapt.py's run (the AR
# weights, 500 iterations, its schedule) with block-4 diffusion. Batch 16: the [x_t ; x_0] layout reads every
# token twice, so this costs the forward tokens of config/toy_adapt.py. LLaDA 2.0's block-size schedule is one
# key away, e.g.
#   python train.py config/toy_adapt_block.py --block_schedule='1@0,4@0.1,32@0.2,128@0.3,4@0.8'
#   python train.py config/toy_adapt_block.py   # then: python sample.py --ckpt=out-toy-adapt-block --cache=prefix
from config.toy_adapt import *  # noqa: F403 (init_from, max_iters, lr, min_lr, warmup_iters, eval_interval ...)

out_dir = 'out-toy-adapt-block'
objective = 'block'
block_size = 4
batch_size = 16
