"""The real-models corpus: how each architecture is made (random weights, no download) and exported.

Each entry is a ``CorpusModel``: a name, the exporter that writes it (``torchscript``: torch.onnx.export
with dynamo=False; ``dynamo``: torch.onnx.export(dynamo=True); ``ultralytics``; ``paddle2onnx``; timm and
HuggingFace models go through the TorchScript exporter, as their docs show), an ``export(path)`` that
writes the .onnx file the way that exporter does by default (dynamic batch where the exporter's docs
make it dynamic), and ``sample(rng)``: one feed per graph input at the sample shape the build pins the
dynamic dims to. The exporters' packages are imported inside the functions, so listing the corpus
needs none of them.

Every network with BatchNorm layers (torchvision, timm, the CRNN, Paddle's) has its BatchNorm statistics
re-estimated on smooth random images before export (benchmarks/corpus_calibrate.py), so that its
activations have a trained network's ranges; the exported file's metadata says how many layers were
(``edgert_corpus_batchnorm_recalibrated``). The image samples are the same kind of smooth images.
Ultralytics builds and exports its own models (not recalibrated: their activations already stay in
range), and the other models have no BatchNorm.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Callable

import numpy as np

from corpus_calibrate import recalibrate_images, smooth_images

RECALIBRATED_KEY = "edgert_corpus_batchnorm_recalibrated"   # metadata: BatchNorm layers re-estimated
EXPORTER_PACKAGES = {"torchscript": ("torch",), "dynamo": ("torch", "onnxscript"),
                     "ultralytics": ("torch", "ultralytics"), "paddle2onnx": ("paddle", "paddle2onnx")}


@dataclasses.dataclass(frozen=True)
class CorpusModel:
    name: str
    exporter: str
    source: str                                    # torchvision, timm, transformers, ultralytics, custom, paddle
    export: Callable[[str], None]
    sample: Callable[[np.random.Generator], dict]


CORPUS: dict[str, CorpusModel] = {}


def corpus_model(name: str, exporter: str, source: str, sample):
    def register(export):
        if name in CORPUS:
            raise RuntimeError(f"corpus model {name!r} is registered twice")
        CORPUS[name] = CorpusModel(name, exporter, source, export, sample)
        return export
    return register


def image(size=224, name="input", batch=1):
    """Smooth random images, per channel of mean 0 and deviation 1 (as after ImageNet normalisation): the data
    the BatchNorm statistics were re-estimated on, so activations stay in their calibrated ranges."""
    return lambda rng: {name: smooth_images(rng, (batch, 3, size, size))}


def uniform_image(size, name):
    return lambda rng: {name: rng.random((1, 3, size, size), dtype=np.float32)}


# -- the two torch exporters ------------------------------------------------------------------------

def torchscript(module, args, path, input_names, output_names, dynamic_axes, kwargs=None, opset=None):
    import torch
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, path, kwargs=kwargs, dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, opset_version=opset)


def torchscript_opset(opset: int):
    """The TorchScript exporter at an older opset (optimum and many scripts still pin 13/14): LayerNorm, GELU
    and HardSwish come out written as their primitive ops."""
    return lambda *args, **kwargs: torchscript(*args, **kwargs, opset=opset)


def dynamo(module, args, path, input_names, output_names, dynamic_axes, kwargs=None):
    import torch
    with torch.no_grad():
        program = torch.onnx.export(module.eval(), args, kwargs=kwargs, dynamo=True, input_names=input_names,
                                    output_names=output_names, dynamic_axes=dynamic_axes)
    program.save(path, external_data=False)


def note_recalibrated(path: str, layers: int) -> None:
    """Record in the exported file how many BatchNorm layers had their statistics re-estimated."""
    import onnx
    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = RECALIBRATED_KEY, str(layers)
    onnx.save(model, path)


def image_classifier(export_fn, path, module, size=224):
    import torch
    layers = recalibrate_images(module, height=size)
    export_fn(module, (torch.randn(1, 3, size, size),), path, ["input"], ["logits"],
              {"input": {0: "batch"}, "logits": {0: "batch"}})
    note_recalibrated(path, layers)


def _torchvision(factory: str, **kwargs):
    import torchvision
    for namespace in (torchvision.models, torchvision.models.detection, torchvision.models.segmentation):
        if hasattr(namespace, factory):
            return getattr(namespace, factory)(weights=None, **kwargs)
    raise AttributeError(f"torchvision has no model {factory!r}")


def _small_vit():
    """A ViT-Ti/16 (torchvision's VisionTransformer class with DeiT-Tiny's sizes; vit_b_16 is 86 M weights)."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer
    model = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)   # torchvision starts the head at zero: logits 0
    return model


# torchvision classifiers through the TorchScript exporter
for _factory in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf",
                 "shufflenet_v2_x1_0", "resnet18", "convnext_tiny"):
    corpus_model(f"tv_{_factory}", "torchscript", "torchvision", image())(
        lambda path, _f=_factory: image_classifier(torchscript, path, _torchvision(_f)))
corpus_model("tv_vit_ti_16", "torchscript", "torchvision", image())(
    lambda path: image_classifier(torchscript, path, _small_vit()))
corpus_model("tv_vit_ti_16_opset14", "torchscript", "torchvision", image())(
    lambda path: image_classifier(torchscript_opset(14), path, _small_vit()))
corpus_model("tv_mobilenet_v3_large_opset13", "torchscript", "torchvision", image())(
    lambda path: image_classifier(torchscript_opset(13), path, _torchvision("mobilenet_v3_large")))

# the dynamo exporter (opset 18+)
for _factory in ("resnet18", "mobilenet_v3_small", "efficientnet_b0"):
    corpus_model(f"dynamo_{_factory}", "dynamo", "torchvision", image())(
        lambda path, _f=_factory: image_classifier(dynamo, path, _torchvision(_f)))
corpus_model("dynamo_vit_ti_16", "dynamo", "torchvision", image())(
    lambda path: image_classifier(dynamo, path, _small_vit()))


# -- torchvision detection and segmentation ----------------------------------------------------------

@corpus_model("tv_ssdlite320_mobilenet_v3_large", "torchscript", "torchvision",
              lambda rng: {"images": smooth_images(rng, (1, 3, 320, 320), unit_range=True)[0]})
def _ssdlite(path):
    import torch
    model = _torchvision("ssdlite320_mobilenet_v3_large", weights_backbone=None)
    layers = recalibrate_images(model, height=320, unit_range=True, as_list=True)
    # torchvision's detection models take a list of images and return boxes/scores/labels after NMS
    torchscript(model, ([torch.rand(3, 320, 320)],), path, ["images"], ["boxes", "scores", "labels"],
                {"boxes": {0: "detections"}, "scores": {0: "detections"}, "labels": {0: "detections"}})
    note_recalibrated(path, layers)


class _SegmentationOut:
    """torchvision's segmentation models return a dict; exporters want a tensor."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model(x)["out"]
        return Wrapped()


for _factory in ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"):
    corpus_model(f"tv_{_factory}", "torchscript", "torchvision", image(320))(
        lambda path, _f=_factory: image_classifier(
            torchscript, path, _SegmentationOut(_torchvision(_f, weights_backbone=None, aux_loss=None)), 320))


# -- timm edge networks (TorchScript exporter, as timm's onnx_export.py does) --------------------------

for _name in ("mobilevit_xxs", "efficientformer_l1", "fastvit_t8", "ghostnet_100", "lcnet_050", "mobileone_s0",
              "efficientvit_m0", "repvit_m0_9"):
    def _timm(path, _n=_name):
        import timm
        image_classifier(torchscript, path, timm.create_model(_n, pretrained=False))
    corpus_model(f"timm_{_name}", "torchscript", "timm", image())(_timm)


# -- HuggingFace encoders from a config, random init -------------------------------------------------

def _tokens(vocab: int, seq: int = 32, token_types: bool = True):
    def sample(rng):
        feeds = {"input_ids": rng.integers(0, vocab, (1, seq), dtype=np.int64),
                 "attention_mask": np.ones((1, seq), np.int64)}
        feeds["attention_mask"][0, seq - 5:] = 0    # a padded tail
        if token_types:
            feeds["token_type_ids"] = np.zeros((1, seq), np.int64)
        return feeds
    return sample


class _Positional:
    """The encoder called with its inputs by position (the TorchScript exporter mixes up keyword inputs)."""

    def __new__(cls, model, names):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *inputs):
                return self.model(**dict(zip(names, inputs)))
        return Wrapped()


def _export_encoder(export_fn, path, model, names):
    import torch
    model.config.return_dict = False
    example = tuple(torch.ones(1, 16, dtype=torch.int64) for _ in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes.update({"last_hidden_state": {0: "batch", 1: "sequence"}})
    outputs = ["last_hidden_state"] + (["pooler_output"] if "token_type_ids" in names else [])
    if "pooler_output" in outputs:
        axes["pooler_output"] = {0: "batch"}
    if export_fn is dynamo:   # the dynamo exporter takes keyword inputs as they are
        export_fn(model, (), path, list(names), outputs, axes, kwargs=dict(zip(names, example)))
    else:
        export_fn(_Positional(model, names), example, path, list(names), outputs, axes)


def _bert_tiny():
    from transformers import BertConfig, BertModel
    config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    return BertModel(config)


corpus_model("hf_bert_tiny", "torchscript", "transformers", _tokens(30522))(
    lambda path: _export_encoder(torchscript, path, _bert_tiny(), ("input_ids", "attention_mask", "token_type_ids")))
corpus_model("hf_bert_tiny_opset14", "torchscript", "transformers", _tokens(30522))(
    lambda path: _export_encoder(torchscript_opset(14), path, _bert_tiny(),
                                 ("input_ids", "attention_mask", "token_type_ids")))
corpus_model("dynamo_hf_bert_tiny", "dynamo", "transformers", _tokens(30522))(
    lambda path: _export_encoder(dynamo, path, _bert_tiny(), ("input_ids", "attention_mask", "token_type_ids")))


@corpus_model("hf_distilbert", "torchscript", "transformers", _tokens(30522, token_types=False))
def _distilbert(path):
    from transformers import DistilBertConfig, DistilBertModel
    _export_encoder(torchscript, path, DistilBertModel(DistilBertConfig()), ("input_ids", "attention_mask"))


# -- Ultralytics YOLO from yaml (no weights), its own exporter, with and without NMS -------------------

def _yolo(path, yaml: str, nms: bool):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO
    workdir = tempfile.mkdtemp(prefix="corpus-yolo-")
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        written = YOLO(yaml).export(format="onnx", nms=nms, imgsz=640)
        shutil.move(written, path)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)


for _yaml in ("yolov8n", "yolo11n"):
    for _nms in (False, True):
        corpus_model(f"{_yaml}{'_nms' if _nms else ''}", "ultralytics", "ultralytics", uniform_image(640, "images"))(
            lambda path, _y=_yaml, _n=_nms: _yolo(path, f"{_y}.yaml", _n))


# -- recurrent models written here (what audio and OCR users export) --------------------------------

def _crnn():
    import torch
    from torch import nn

    class CRNN(nn.Module):
        """Conv feature extractor → height collapsed → bidirectional LSTM → per-column CTC log-probabilities."""

        def __init__(self, classes=37, hidden=64):
            super().__init__()
            def block(cin, cout, pool):
                return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool)]
            self.cnn = nn.Sequential(*block(1, 32, 2), *block(32, 64, 2), *block(64, 128, (2, 1)),
                                     *block(128, 128, (4, 1)))
            self.rnn = nn.LSTM(128, hidden, num_layers=2, bidirectional=True)
            self.head = nn.Linear(2 * hidden, classes)

        def forward(self, x):
            features = self.cnn(x).squeeze(2).permute(2, 0, 1)       # (width, batch, channels)
            out, _ = self.rnn(features)
            return self.head(out).log_softmax(2)
    return CRNN(), torch


@corpus_model("crnn_bilstm_ctc", "torchscript", "custom",
              lambda rng: {"image": smooth_images(rng, (1, 1, 32, 128))})
def _export_crnn(path):
    model, torch = _crnn()
    layers = recalibrate_images(model, channels=1, height=32, width=128)
    torchscript(model, (torch.randn(1, 1, 32, 128),), path, ["image"], ["log_probs"],
                {"image": {0: "batch", 3: "width"}, "log_probs": {0: "steps", 1: "batch"}})
    note_recalibrated(path, layers)


@corpus_model("gru_keyword_spotter", "torchscript", "custom",
              lambda rng: {"mfcc": rng.standard_normal((1, 49, 40)).astype(np.float32)})
def _export_kws(path):
    import torch
    from torch import nn

    class KeywordSpotter(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(40, 64, num_layers=2, batch_first=True)
            self.head = nn.Linear(64, 12)

        def forward(self, mfcc):
            out, _ = self.gru(mfcc)
            return self.head(out[:, -1])
    torchscript(KeywordSpotter(), (torch.randn(1, 49, 40),), path, ["mfcc"], ["logits"],
                {"mfcc": {0: "batch", 1: "frames"}, "logits": {0: "batch"}})


def _stream_sample(rng):
    return {"frame": rng.standard_normal((1, 1, 160)).astype(np.float32),
            "h_in": rng.standard_normal((1, 1, 96)).astype(np.float32) * 0.5,
            "c_in": rng.standard_normal((1, 1, 96)).astype(np.float32) * 0.5}


@corpus_model("streaming_lstm_state", "torchscript", "custom", _stream_sample)
def _export_streaming(path):
    import torch
    from torch import nn

    class StreamingDenoiser(nn.Module):
        """One 10 ms audio frame per call; the LSTM state goes out and comes back in as graph I/O."""

        def __init__(self):
            super().__init__()
            self.encode = nn.Conv1d(1, 64, kernel_size=16, stride=8)
            self.lstm = nn.LSTM(64 * 19, 96, batch_first=True)
            self.mask = nn.Linear(96, 160)

        def forward(self, frame, h, c):
            features = torch.relu(self.encode(frame)).flatten(1).unsqueeze(1)
            out, (h, c) = self.lstm(features, (h, c))
            return frame * torch.sigmoid(self.mask(out)), h, c
    args = (torch.randn(1, 1, 160), torch.zeros(1, 1, 96), torch.zeros(1, 1, 96))
    torchscript(StreamingDenoiser(), args, path, ["frame", "h_in", "c_in"], ["denoised", "h_out", "c_out"],
                {"frame": {0: "batch"}, "h_in": {1: "batch"}, "c_in": {1: "batch"}, "denoised": {0: "batch"},
                 "h_out": {1: "batch"}, "c_out": {1: "batch"}})


# -- PaddlePaddle through paddle2onnx ----------------------------------------------------------------

def _paddle(path, factory: str):
    import paddle
    import paddle2onnx
    model = getattr(paddle.vision.models, factory)(pretrained=False)
    layers = _recalibrate_paddle(model)
    workdir = tempfile.mkdtemp(prefix="corpus-paddle-")
    try:
        prefix = os.path.join(workdir, "model")
        paddle.jit.save(model, prefix, input_spec=[paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")])
        program = next(prefix + ext for ext in (".json", ".pdmodel") if os.path.exists(prefix + ext))
        paddle2onnx.export(program, prefix + ".pdiparams", path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note_recalibrated(path, layers)


def _recalibrate_paddle(model, batches: int = 8, size: int = 224) -> int:
    """corpus_calibrate.recalibrate for a Paddle network: its BatchNorm layers in training mode, the k-th
    batch weighted 1/(k+1) (Paddle has no cumulative mode: momentum k/(k+1) gives the same average)."""
    import paddle
    from corpus_calibrate import BATCH_SIZE
    layers = [m for m in model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    model.eval()
    for layer in layers:
        layer._mean.set_value(paddle.zeros_like(layer._mean))
        layer._variance.set_value(paddle.ones_like(layer._variance))
        layer.train()
    rng = np.random.default_rng(0)
    with paddle.no_grad():
        for k in range(batches):
            for layer in layers:
                layer._momentum = k / (k + 1)
            model(paddle.to_tensor(smooth_images(rng, (BATCH_SIZE, 3, size, size))))
    model.eval()
    return len(layers)


for _factory in ("mobilenet_v3_small", "resnet18"):
    corpus_model(f"paddle_{_factory}", "paddle2onnx", "paddle", image(name="x"))(
        lambda path, _f=_factory: _paddle(path, _f))
