# The AR baseline of the toy run: same model, data, budget and seed as `python train.py`, but causal
# attention and next-token loss. Its val loss is the exact NLL, the diffusion runs' is an ELBO bound:
# compare val_bpb in out-toy-ar/log.jsonl with out-toy/log.jsonl.
#   python train.py config/toy_ar.py
out_dir = 'out-toy-ar'
objective = 'ar'
