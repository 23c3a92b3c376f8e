# The small world's AR + fill-in-the-middle baseline (Bavarian et al. 2022): the infilling baseline.
#   python train.py config/world_ar_fim.py
from config.world_ar import *  # noqa: F403

out_dir = 'out-world-ar-fim'
fim_rate = 0.9
fim_spm_rate = 0.5
