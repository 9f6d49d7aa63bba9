"""SimCLR training engine: data, augmentation, model, loss, optimizers, evaluation, trainer, worker, CLI.

Importing this package does not import torch; the submodules that need it do.
"""
