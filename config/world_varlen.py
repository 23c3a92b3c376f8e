# The small world, infilling without the hole's length (DreamOn): config/world_adapt.py (out-world-ar2000 +
# 500 masked-diffusion iterations) with half of the rows made variable-length rows: a FIM cut of one
# program, its middle padded with 0..32 delete targets, adjacent masked pairs merged into <|expand|>
# targets (docs/objectives.md). The same compute as every other arm. Then:
#   python eval.py --task=world_infill --ckpt=out-world-varlen --variable_length --canvas=4
from config.world_adapt import *  # noqa: F403

out_dir = 'out-world-varlen'
varlen_rate = 0.5
max_delete = 32
