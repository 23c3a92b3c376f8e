# AR -> block diffusion adaptation (Stable-DiffCoder, Fast-dLLM v2, SDAR): continue a trained AR run with
# block-4 diffusion. Batch 16: the [x_t ; x_0] layout reads every token twice, so this costs the forward
# tokens of config/toy_adapt.py. LLaDA 2.0's block-size schedule is one key away, e.g.
#   python train.py config/toy_adapt_block.py --block_schedule='1@0,4@0.1,32@0.2,128@0.3,4@0.8'
#   python train.py config/toy_adapt_block.py   # then: python sample.py --ckpt=out-toy-adapt-block --cache=prefix
init_from = 'out-toy-ar'
out_dir = 'out-toy-adapt-block'
objective = 'block'
block_size = 4
batch_size = 16
max_iters = 500
lr = 1e-3
min_lr = 1e-4
warmup_iters = 20
eval_interval = 50
sample_interval = 0
