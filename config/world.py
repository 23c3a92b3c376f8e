# The small world (data/pyworld) with masked diffusion from scratch: the same model, data, budget and
# seed as config/world_ar.py, bidirectional attention and LLaDA's loss.
#   python train.py config/world.py
out_dir = 'out-world'
dataset = 'pyworld'
objective = 'mdm'
seq_len = 512
batch_size = 8
eval_interval = 250
sample_interval = 0
