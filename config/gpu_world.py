# The small world (data/pyworld: ~14M byte tokens of short executable programs) on one GPU: config/gpu.py's
# model, batch, schedule and budget, seq_len 512 as config/world.py. By the same FLOP arithmetic (see
# config/gpu.py; NOT yet measured on a GPU): ~5 min on an H100, ~30 min on a 24 GB GPU. 10,000
# iterations of 32,768 tokens are ~23 passes over the train split.
#   python train.py config/gpu_world.py                     # prepares data/pyworld on first use
#   python eval.py --task=world_write --ckpt=out-gpu-world --split=train,test --gen_length=192
from config.gpu import *  # noqa: F403

out_dir = 'out-gpu-world'
dataset = 'pyworld'
seq_len = 512
