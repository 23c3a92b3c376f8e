# CoDA stage 2: code mid-training, continuing stage 1. Paper: ~21B tokens, global batch 256
# sequences of 8192, five epochs whose S1:S2:S3 probabilities rise 1:1:5%, 5:5:10%, 10:10:15%,
# 15:15:20%, 20:20:25%; masking='midtrain' runs them as five equal fifths of max_iters (with every
# probability a real per-row probability; the released code turns S3 on for every batch).
# Memory per device as for stage 1 (the same shape and micro-batch; see coda_pretrain.py's --plan figures):
# ddp 46.9 GB (80 GB GPUs, TPU v5p); --parallel=fsdp 19.7 GB on 8 x 24 GB GPUs; on a TPU v4-8
# --device=xla --parallel=fsdp --batch_size=8 --grad_accum=32, 22.3 GB per chip.
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_midtrain.py                   # 8 x 80 GB GPUs
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_midtrain.py --parallel=fsdp   # 8 x 24 GB GPUs
init_from = 'out-coda-pretrain'   # weights of stage 1 (a train.py out_dir); fresh optimizer and schedule
model = '1.7B'                # the shape --plan assumes while init_from is not on disk yet
out_dir = 'out-coda-midtrain'
dataset = 'data/pycode_qwen3'     # the paper uses a curated code corpus here
objective = 'mdm'
masking = 'midtrain'
seq_len = 2048                    # paper: 8192
batch_size = 2
grad_accum = 128                  # 256 sequences per step, as the paper's 256 (of 8192 tokens)
max_iters = 10000                 # ~5B tokens; the paper's ~21B would be ~40k steps at this batch
lr = 2e-5
min_lr = 2e-6
warmup_iters = 200
dtype = 'bfloat16'
eval_interval = 1000
eval_iters = 20
elbo_samples = 4
checkpoint_interval = 1000
sample_interval = 0
