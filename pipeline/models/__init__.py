"""Models: build the built-in architectures (architectures.py), load a user's model safely
(safe_load.py, with nested backbones inlined by flatten.py and Keras 3 models carried over by
keras3*.py), train and evaluate (train.py: the one fit, accuracy and fine-tune), and count
MACs (macs.py). Everything here is tf_keras (Keras 2), what TF-MOT runs on.
"""
