# CoDA stage 1: diffusion pre-training of Qwen3-1.7B into a bidirectional masked-diffusion coder.
# Paper: ~180B tokens, 8192-token sequences, global batch 512 sequences (4.2M tokens per step),
# TPU with torch_xla SPMD/FSDP + Adafactor, bf16; progressive masking S1, S2, S3 at 1% each.
# Here AdamW, sequences of 2048 and a global batch of 256 sequences = 0.5M tokens per step; 180B
# tokens would be ~343k steps: set max_iters to your budget. Which setting fits which hardware, per
# device from `python train.py config/coda_pretrain.py --plan --world_size=N --device_memory=...`:
#   parallel=ddp (default; one replica per TPU chip on XLA): 46.9 GB on 8 devices: 80 GB GPUs, TPU v5p
#   parallel=fsdp on 8 GPUs: 19.7 GB: 8 x 24 GB GPUs (activation_checkpointing=true: 5.5 GB)
#   parallel=fsdp on a TPU v4-8 (4 chips of 32 GB), batch_size=8 grad_accum=32: 22.3 GB per chip
# Nothing at this scale was run on the 2-core CPU machine this repo was written on (no GPU, no TPU).
#
#   huggingface-cli download Qwen/Qwen3-1.7B --local-dir checkpoints/Qwen3-1.7B
#   python data/pycode/prepare.py --tokenizer=checkpoints/Qwen3-1.7B --out_dir=data/pycode_qwen3 --roots=/your/code
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_pretrain.py                   # 8 x 80 GB GPUs
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_pretrain.py --parallel=fsdp   # 8 x 24 GB GPUs
#   PJRT_DEVICE=TPU python train.py config/coda_pretrain.py --device=xla    # v5p: on every host of a TPU VM/pod
#   PJRT_DEVICE=TPU python train.py config/coda_pretrain.py --device=xla --parallel=fsdp --batch_size=8 --grad_accum=32  # v4-8
init_from = 'checkpoints/Qwen3-1.7B'  # loaded with attention='bidirectional', shift_logits=True, mask id 151669
model = '1.7B'                # the shape --plan assumes while init_from is not on disk yet
out_dir = 'out-coda-pretrain'
dataset = 'data/pycode_qwen3'
objective = 'mdm'
masking = 'pretrain'         # S1/S2/S3 at 1% each (paper)
seq_len = 2048               # paper: 8192
batch_size = 2               # per process
grad_accum = 128             # total over all processes: 2 x 128 = 256 sequences per step (paper: 512)
max_iters = 20000            # ~10B tokens; the paper's ~180B would be ~343k steps at this batch
lr = 3e-5                    # our choice for AdamW on a pretrained model (the paper uses Adafactor)
min_lr = 3e-6
warmup_iters = 500
weight_decay = 0.1
grad_clip = 1.0
dtype = 'bfloat16'
eval_interval = 1000
eval_iters = 20
elbo_samples = 4
log_interval = 10
checkpoint_interval = 1000
sample_interval = 0          # generation on TPU recompiles per step: keep it for eval.py
