"""SimCLR training engine, in two sub-packages:

- `engine.simclr`: the science (data, augmentation, model, loss, optimizers, evaluation, trainer);
- `engine.jobs`: the job machinery (CLI, worker, runner, queue commands).

`engine.simclr` never imports `engine.jobs`. Importing this package does not import torch.
"""
