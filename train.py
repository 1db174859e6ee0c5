"""`python train.py --prune --pruning_rate 0.5`: the same flags and job as pipeline.run."""

from pipeline.run import run

if __name__ == "__main__":
  run()
