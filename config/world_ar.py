# The small world (data/pyworld): the AR baseline at the toy budget, 2,500 iterations of 16 x 256 byte
# tokens (10.2M tokens, as config/toy_ar.py), causal attention and next-token loss.
#   python train.py config/world_ar.py
#   python train.py config/world_ar.py --max_iters=2000 --out_dir=out-world-ar2000   # the source of the adapted arms
out_dir = 'out-world-ar'
dataset = 'pyworld'
objective = 'ar'
seq_len = 256
batch_size = 16
eval_interval = 250
sample_interval = 0
