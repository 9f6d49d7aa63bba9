"""The science: data, augmentation, model, loss, optimizers, evaluation and the training loop."""
