# CoDA's stage 2 at toy scale: continue the toy model (out-toy, from `python train.py`) with the
# mid-training curriculum of progressive masking. masking='midtrain' runs the paper's five epochs
# as five equal fifths of max_iters: S1:S2:S3 = 1:1:5%, 5:5:10%, 10:10:15%, 15:15:20%, 20:20:25%.
#   python train.py config/toy_midtrain.py
init_from = 'out-toy'        # weights only: a fresh optimizer and schedule
out_dir = 'out-toy-midtrain'
masking = 'midtrain'
max_iters = 300
lr = 1e-3
min_lr = 1e-4
warmup_iters = 10
