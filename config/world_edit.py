# The small world, AR -> diffusion with Seed Diffusion's edit stage: config/world_adapt.py (out-world-ar2000
# + 500 masked-diffusion iterations) with edit corruption (substitutions, insertions, deletions) added
# over the last 20%, the same compute as every other arm. edit_keep also scores the visible tokens the
# edits left alone, so the model learns to keep a right token as well as to fix a wrong one.
#   python train.py config/world_edit.py
from config.world_adapt import *  # noqa: F403

out_dir = 'out-world-edit'
edit_start = 0.8
edit_rate = 0.1
edit_keep = 1.0
