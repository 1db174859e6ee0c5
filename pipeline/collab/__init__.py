"""TF-MOT's collaborative optimization after pruning: weight clustering (cluster.py) and
quantization-aware fine-tuning (qat.py), each keeping what the stages before it did."""
