"""BatchNorm statistics re-estimated before export: randomly initialised networks as a trained one's ranges.

A network built with random weights and no pretrained checkpoint keeps BatchNorm's initial running
statistics (mean 0, variance 1), which do not describe its activations at all: through MobileNetV3 or
EfficientNet-B0 the activations shrink until the logits are about 1e-9 (below fp16's smallest subnormal,
every fp16 logit is 0), through an un-reparameterised MobileOne they grow to 2e8 (beyond fp16's 65504).
A trained network's BatchNorm layers hold the statistics of their own inputs, so its activations stay
near unit scale. ``recalibrate`` gives the random network the same property: with every BatchNorm in
training mode (the rest of the network in eval mode: no dropout, no stochastic depth) and a cumulative
moving average (``momentum=None``), a few batches of image-like data re-estimate each running mean and
variance; the network then goes back to eval mode and is exported as usual (the exporters fold the
statistics into the convolutions, as they do for a trained network).

The data: smooth random images (a coarse normal field upsampled bilinearly plus a little fine noise), per
channel of zero mean and unit deviation as after ImageNet normalisation, or in [0, 1] for models that
normalise their input themselves (torchvision's detectors). Seeded: an export is reproducible.
"""

from __future__ import annotations

import numpy as np

BATCHES, BATCH_SIZE = 8, 4


def smooth_images(rng: np.random.Generator, shape, unit_range: bool = False) -> np.ndarray:
    """``shape`` (N, C, H, W) float32 images: a coarse field (1/8 of the size) upsampled, plus fine noise;
    each image and channel of mean 0 and deviation 1, or mapped into [0, 1] with ``unit_range``."""
    n, c, h, w = shape
    coarse = rng.standard_normal((n, c, max(2, h // 8), max(2, w // 8)))
    rows = np.linspace(0, coarse.shape[2] - 1, h)
    cols = np.linspace(0, coarse.shape[3] - 1, w)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[2] - 1), np.minimum(c0 + 1, coarse.shape[3] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = coarse[:, :, r0][:, :, :, c0] * (1 - fc) + coarse[:, :, r0][:, :, :, c1] * fc
    bottom = coarse[:, :, r1][:, :, :, c0] * (1 - fc) + coarse[:, :, r1][:, :, :, c1] * fc
    field = top * (1 - fr) + bottom * fr + 0.2 * rng.standard_normal((n, c, h, w))
    field = (field - field.mean(axis=(2, 3), keepdims=True)) / field.std(axis=(2, 3), keepdims=True)
    if unit_range:
        field = np.clip(0.5 + 0.2 * field, 0.0, 1.0)
    return field.astype(np.float32)


def batchnorm_layers(module) -> list:
    import torch
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def recalibrate(module, run_batch, batches: int = BATCHES, seed: int = 0) -> int:
    """Re-estimate the running statistics of every BatchNorm in ``module`` from ``batches`` calls of
    ``run_batch(module, rng)`` (which feeds one batch of data drawn from ``rng``); returns how many
    BatchNorm layers were re-estimated. ``module`` is left in eval mode."""
    import torch
    layers = batchnorm_layers(module)
    module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None         # cumulative average over every batch, not an exponential one
        layer.train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(batches if layers else 0):
            run_batch(module, rng)
    module.eval()
    return len(layers)


def recalibrate_images(module, channels: int = 3, height: int = 224, width: int | None = None,
                       unit_range: bool = False, as_list: bool = False) -> int:
    """``recalibrate`` with smooth random images of ``channels`` x ``height`` x ``width``; ``as_list``:
    the module takes a list of 3-D images (torchvision's detection API)."""
    import torch
    shape = (BATCH_SIZE, channels, height, width or height)

    def run_batch(model, rng):
        images = torch.from_numpy(smooth_images(rng, shape, unit_range))
        model(list(images) if as_list else images)
    return recalibrate(module, run_batch)
