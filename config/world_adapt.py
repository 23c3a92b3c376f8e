# The small world, AR -> diffusion: out-world-ar2000 (config/world_ar.py at 2,000 iterations) adapted
# with masked diffusion for 500 iterations, the logit shift on (shift_logits=auto keeps the AR head):
# 2,500 iterations of compute in all, as every other arm.
#   python train.py config/world_ar.py --max_iters=2000 --out_dir=out-world-ar2000
#   python train.py config/world_adapt.py
from config.world import *  # noqa: F403

init_from = 'out-world-ar2000'
out_dir = 'out-world-adapt'
max_iters = 500
lr = 1e-3
min_lr = 1e-4
warmup_iters = 20
eval_interval = 100
