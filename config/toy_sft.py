# CoDA's stage 3 (instruction tuning) at toy scale, on data/pycode_sft (docstring -> function, chat
# template, byte tokens). The prompt is never masked; the answer, its eos and the padding after it
# are. Start from the toy pre-trained (or mid-trained) model.
#   python -m data.pycode_sft.prepare        # done automatically on first use with the byte tokenizer
#   python train.py config/toy_sft.py
init_from = 'out-toy'        # or 'out-toy-midtrain'
out_dir = 'out-toy-sft'
objective = 'sft'
dataset = 'pycode_sft'
seq_len = 512                # every example of the set fits 512 bytes (prepare.py's max_len)
batch_size = 8
max_iters = 300
lr = 5e-4
min_lr = 5e-5
warmup_iters = 30            # 10% as in CoDA's SFT
eval_interval = 100
sample_interval = 100
