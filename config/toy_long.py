# The toy diffusion run with about one CPU hour of budget: 12,000 iterations, 4.8x the default 2,500 of
# `python train.py` (same model, data and seed, its own cosine schedule). Measured here: 1 h 16 min on
# 2 cores, val ELBO 2.91 -> 2.32 bits/byte (docs/experiments.md, table e). It measures how far more
# compute moves diffusion towards AR; experiments/run.py curves reads its log.jsonl next to the AR run's.
#   python train.py config/toy_long.py
out_dir = 'out-toy-long'
max_iters = 12000
eval_interval = 500
