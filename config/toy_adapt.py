# AR -> diffusion adaptation at toy scale (CoDA, Dream): continue a trained AR run with the masked-diffusion
# loss. The AR run's weights, a fresh optimizer and schedule; shift_logits='auto' keeps the AR next-token head
# (the prediction for position i is read from the logits at i-1), attention becomes bidirectional at once
# (attn_anneal_iters=N opens it gradually instead, DiffuLLaMA). Measured in docs/experiments.md (table f).
#   python train.py config/toy_ar.py            # the AR source (out-toy-ar)
#   python train.py config/toy_adapt.py         # 500 diffusion iterations
#   python train.py config/toy_adapt.py --shift_logits=false --out_dir=out-toy-adapt-noshift   # the ablation
init_from = 'out-toy-ar'
out_dir = 'out-toy-adapt'
objective = 'mdm'
max_iters = 500
lr = 1e-3
min_lr = 1e-4
warmup_iters = 20
eval_interval = 50
sample_interval = 0
