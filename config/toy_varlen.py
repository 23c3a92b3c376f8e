# Variable-length infilling (DreamOn) at toy scale: continue the adapted toy model (out-toy-adapt =
# AR 2,000 + mdm 500 iterations with the logit shift, config/toy_adapt.py) with half of its rows made
# infilling rows: a FIM cut of one document, its middle padded with 0..64 delete targets
# (<|endoftext|>), masked, and adjacent masked pairs merged into one <|expand|> target with probability
# 0.5 x (1 - masked fraction), or 0.5 in 40% of the rows. A row's deletes share the weight of one
# token (pool_deletes, DreamOn's weight_eos): weighted one each, "the slot before the suffix is a
# delete" becomes the most confident call and the sampler empties every hole. The other rows keep the
# mdm objective. The model's vocab gets a row for <|expand|> (263) if it has none. Then infill without
# giving the hole's length:
#   python train.py config/toy_varlen.py
#   python sample.py --ckpt=out-toy-varlen --prompt='def add(a, b):\n' --suffix='\n\nprint(add(1, 2))\n' --variable_length
init_from = 'out-toy-adapt'  # weights only: a fresh optimizer and schedule
out_dir = 'out-toy-varlen'
varlen_rate = 0.5
max_delete = 64
merge_prob = 0.5
merge_static = 0.4
pool_deletes = True
max_iters = 1200
lr = 1e-3
min_lr = 1e-4
warmup_iters = 20
eval_interval = 300
