# The small world (data/pyworld): the AR baseline at the toy budget, 2,500 iterations of 8 x 512 byte
# tokens (10.2M tokens, as config/toy_ar.py; a window holds whole programs), causal attention and next-token loss.
#   python train.py config/world_ar.py
#   python train.py config/world_ar.py --max_iters=2000 --out_dir=out-world-ar2000   # the source of the adapted arms
out_dir = 'out-world-ar'
dataset = 'pyworld'
objective = 'ar'
seq_len = 512
batch_size = 8
eval_interval = 250
sample_interval = 0
