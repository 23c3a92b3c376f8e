# Toy block diffusion (BD3-LM / Stable-DiffCoder): block-causal attention over blocks of 4 tokens,
# the [x_t ; x_0] training layout (twice the tokens per forward, so about half the speed of the
# default), per-block clipped noise. Stable-DiffCoder uses block_size 4 and a warm-up of u_max;
# here 200 warm-up iterations of the 2500.
#   python train.py config/toy_block.py
#   python sample.py --ckpt=out-toy-block --cache=prefix     # exact block KV cache
out_dir = 'out-toy-block'
objective = 'block'
block_size = 4
block_warmup_iters = 200
