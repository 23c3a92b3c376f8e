# One GPU: masked diffusion from scratch on data/pycode (the Python stdlib, ~30M byte tokens) with the
# `gpu` preset of model.py: 8 layers, width 768, 12 heads of 64 (4 K/V heads), SwiGLU 2304, the byte
# tokenizer (vocab 264): 55.3M parameters. bf16 autocast, torch.compile, fused AdamW.
#
# The shape and budget come from FLOP arithmetic; NOTHING here has been measured on a GPU yet:
#   FLOPs per token = 6 N + 12 x layers x heads x head_dim x seq_len (PaLM's count; attention sees all 512 keys)
#                   = 6 x 55.3M + 12 x 8 x 768 x 512 = 331.6M + 37.7M = 369M
#   one iteration   = 64 x 512 = 32,768 tokens = 1.21e16 FLOPs
#   H100 (989 TFLOP/s dense bf16) at 40% MFU (the goal): 30.6 ms/iter, 10,000 iterations in 5.1 min
#   a 24 GB RTX 4090 (165 TFLOP/s) at 40%: 183 ms/iter, 30.5 min
# 10,000 iterations are 328M tokens, ~11 passes over pycode; masked diffusion keeps gaining from repeated
# data far longer than AR does ("Diffusion beats autoregressive in data-constrained settings", 2025).
# Width 768 rather than 512: wider matmuls fill the GPU better (the MFU goal). Bytes rather than gpt2: both
# datasets build offline at bytes, and the 264-row head is 0.4% of the parameters, so 6 N is the real cost.
# lr 1e-3 is nanoGPT's range for a model this size, not tuned here.
# Memory (python train.py config/gpu.py --plan --device_memory=24GB): a peak of 14.7 GB, fits 24 GB.
#
#   python bench.py --case=gpu            # check the GPU path first (lib/gpucheck.py), ~5 min on an H100
#   python train.py config/gpu.py         # prepares data/pycode on first use
#   python sample.py --ckpt=out-gpu --prompt='def fib(n):' --temperature=0.8 --top_k=10
out_dir = 'out-gpu'
model = 'gpu'
objective = 'mdm'
batch_size = 64
seq_len = 512
max_iters = 10000
lr = 1e-3
min_lr = 1e-4
warmup_iters = 200
compile = True
eval_interval = 1000
eval_iters = 20
log_interval = 50
checkpoint_interval = 2500
sample_interval = 2500
