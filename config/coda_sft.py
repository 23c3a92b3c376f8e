# CoDA stage 3: instruction tuning. Paper: GPUs with torchrun + DeepSpeed ZeRO-2, AdamW lr 2e-5,
# cosine schedule, 10% warm-up, sequences cut at 1024 tokens; the prompt is never masked, the
# answer and the trailing padding/EOS are (the model learns where to stop). Here: AdamW; per device
# (`--plan`, 4 x 1024 = the tokens of stage 1): ddp 46.9 GB (80 GB GPUs); --parallel=fsdp 19.7 GB on
# 8 x 24 GB GPUs (the paper's ZeRO-2: --reshard_after_forward=false, 22.3 GB); on a TPU v4-8
# --device=xla --parallel=fsdp --batch_size=16 --grad_accum=8, 22.3 GB per chip.
#   python data/pycode_sft/prepare.py --tokenizer=checkpoints/Qwen3-1.7B --max_len=1024 --out_dir=data/pycode_sft_qwen3
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_sft.py                        # 8 x 80 GB GPUs
#   torchrun --standalone --nproc_per_node=8 train.py config/coda_sft.py --parallel=fsdp        # 8 x 24 GB GPUs
#   python train.py --init_from=resume --out_dir=out-coda-sft --max_iters=0 --export_hf=out-coda-sft/hf
init_from = 'out-coda-midtrain'   # or a CoDA-v0-Base directory from Hugging Face
model = '1.7B'                # the shape --plan assumes while init_from is not on disk yet
out_dir = 'out-coda-sft'
dataset = 'data/pycode_sft_qwen3'
objective = 'sft'
masking = 'none'
seq_len = 1024                    # paper: 1024
batch_size = 4
grad_accum = 32                   # 128 sequences per step (our choice)
max_iters = 3000
lr = 2e-5                         # paper
min_lr = 2e-6
warmup_iters = 300                # 10% of max_iters (paper)
dtype = 'bfloat16'
eval_interval = 500
eval_iters = 20
checkpoint_interval = 500
sample_interval = 500
