"""
python eval.py --task=humaneval|mbpp|infill|humaneval_infill|elbo [--protocol=coda] ...: evaluate a
nanoCoDA model (`python eval.py --help` lists every option). The code is evals/evaluation.py; this file is
only the command, so that no module is named after Python's builtin eval.
"""
from lib.cli import run_cli
from evals.evaluation import main

if __name__ == '__main__':
    run_cli(main)
