# The small world with masked diffusion and Seed Diffusion's edit stage: mask-based corruption first,
# then edits (substitutions, insertions, deletions) added over the last 20% of training.
#   python train.py config/world_edit.py
from config.world import *  # noqa: F403

out_dir = 'out-world-edit'
edit_start = 0.8
edit_rate = 0.1
