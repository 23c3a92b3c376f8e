# Adapt a Hugging Face Qwen3-0.6B (AR) into a masked-diffusion coder on one 24 GB GPU: CoDA's stage 1 at small
# scale. The weights load with attention='bidirectional' and the logit shift on (shift_logits=auto keeps the AR
# head, as CoDA does); AdamW in fp32 with bf16 autocast, all in one process.
# Memory (python train.py config/gpu_adapt_qwen3.py --plan --device_memory=24GB, from the directory's
# config.json; the preset 0.6B gives the same): 0.596B parameters, micro-batch 2 x 1024, a peak of 13.8 GB
# (params 2.4 + AdamW 4.8 + bf16 copies 1.2 + activations 5.2 GB), which leaves room for the plan's error and
# the CUDA context; batch_size=4 plans 19.1 GB. The figures are the plan's; NOT yet measured on a GPU.
# Time, by FLOP arithmetic (6 N + 12 x layers x heads x head_dim x seq_len = 3.58 + 0.70 = 4.28 GFLOPs per
# token, 32,768 tokens per iteration = 1.4e14 FLOPs): at 40% MFU 0.35 s per iteration on an H100 (1,000 in 6 min)
# and 2.1 s on an RTX 4090 (35 min); micro-batches of 2,048 tokens will likely fall short of 40%. Not measured.
#
#   huggingface-cli download Qwen/Qwen3-0.6B --local-dir checkpoints/Qwen3-0.6B     # any way of getting the files
#   python -m data.pycode.prepare --tokenizer=checkpoints/Qwen3-0.6B --out_dir=data/pycode_qwen3
#   python train.py config/gpu_adapt_qwen3.py
#   python sample.py --ckpt=out-gpu-adapt-qwen3 --prompt='def fib(n):' --gen_length=64
init_from = 'checkpoints/Qwen3-0.6B'
model = '0.6B'                # the shape --plan assumes while init_from is not on disk yet
out_dir = 'out-gpu-adapt-qwen3'
dataset = 'data/pycode_qwen3'
objective = 'mdm'
seq_len = 1024
batch_size = 2
grad_accum = 16               # 32 sequences = 32,768 tokens per step
max_iters = 1000              # ~33M tokens, ~4 passes over the stdlib at Qwen3's tokenizer (7.6M tokens)
lr = 3e-5                     # as config/coda_pretrain.py: a pretrained model moves slowly
min_lr = 3e-6
warmup_iters = 50
dtype = 'bfloat16'
compile = True
eval_interval = 200
eval_iters = 20
log_interval = 10
checkpoint_interval = 500
sample_interval = 500
