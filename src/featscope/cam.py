"""Class activation maps for the serving app, on top of pytorch-grad-cam.

Two paths give the same heatmap:

* **head path** (``bundle.head`` known): the trunk runs once without autograd, a forward hook
  keeps the CAM layer's activation ``A``; pytorch-grad-cam then runs on a tiny wrapper module
  ``head(identity(a))`` fed ``A``, so backward (and AblationCAM's re-runs) only go through the
  pooling + classifier. ``A`` is cached by image key, so switching the target class of an
  already-clicked image costs no trunk pass at all.
* **full path** (no head, or ScoreCAM, which must re-run the whole network on masked *images*):
  pytorch-grad-cam on the full model, as its documentation shows.

Thread safety: hooks on the shared model are only registered under a per-model lock (and the
trunk hook only records its own thread's forward); slow methods on the full path run on a
private deep copy so they never hold that lock for minutes.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import (
    AblationCAM,
    AblationLayer,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .errors import FeatscopeError
from .models import ModelBundle, resolve_module

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
}
# Hundreds of forward passes on the full path; with a head, AblationCAM only re-runs the head
# (see estimate_seconds for the actual cost).
SLOW_METHODS: frozenset[str] = frozenset({"scorecam", "ablationcam"})
GRADIENT_METHODS: frozenset[str] = frozenset({"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"})
# ScoreCAM multiplies the *input image* by upsampled activation masks and re-runs the model;
# on the head wrapper it would mask the activation instead (a different method), so it always
# takes the full path. AblationCAM replaces the CAM layer's output and re-runs what follows it,
# which the head wrapper reproduces exactly.
_FULL_PATH_ONLY: frozenset[str] = frozenset({"scorecam"})

DEFAULT_SLOW_BATCH_SIZE = 32


class CamCancelled(Exception):
    """The caller's cancel event was set while a CAM was being computed."""


@dataclass
class CamResult:
    heatmap: np.ndarray  # float32 [crop, crop] in [0, 1], on the model input
    heatmap_original: np.ndarray  # float32 [H, W] of the original; NaN where the crop cut it off
    target: int  # class index explained
    method: str
    probs: np.ndarray  # float32 [C] softmax of the image
    seconds: float


# --------------------------------------------------------------------------------------
# Locks: one per model object, shared by every engine (and anyone else) hooking that model.

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock to hold while hooks are registered on ``model`` (forward hooks are global to
    the module, so a concurrent forward would otherwise fire another caller's hooks)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


# --------------------------------------------------------------------------------------
# pytorch-grad-cam adapters


class _HeadModel(nn.Module):
    """``head(identity(a))``: the CAM layer's activation in, logits out.

    The identity is the CAM target layer; the head is kept as a plain attribute (not a
    submodule) so hooks and AblationCAM's layer swap only ever touch this per-call wrapper,
    never the shared model.
    """

    def __init__(self, head: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        super().__init__()
        self.cam_input = nn.Identity()
        object.__setattr__(self, "_head_fn", head)
        # BaseCAM reads the device from the model's first parameter.
        self._device_anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self._head_fn(self.cam_input(a))


class _Progress(nn.Module):
    """Wraps the model a slow method calls once per batch: checks cancel, reports progress."""

    def __init__(
        self,
        inner: nn.Module,
        progress: Callable[[int, int], None] | None,
        cancel: threading.Event | None,
    ):
        super().__init__()
        self.inner = inner
        self._progress = progress
        self._cancel = cancel
        self.total: int | None = None
        self.done = 0
        self._skip = 0

    def arm(self, total: int, skip_calls: int) -> None:
        self.total, self.done, self._skip = total, 0, skip_calls
        if self._progress is not None:
            self._progress(0, total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._cancel is not None and self._cancel.is_set():
            raise CamCancelled()
        out = self.inner(x)
        if self.total is not None:
            if self._skip > 0:  # AblationCAM's un-ablated reference pass
                self._skip -= 1
            else:
                self.done += int(x.shape[0])
                if self._progress is not None:
                    self._progress(min(self.done, self.total), self.total)
        return out


class _ScoreCAM(ScoreCAM):
    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        # The activations were already read; without this the hooks would keep every masked
        # batch's activation (hundreds of MB) until the end.
        for handle in self.activations_and_grads.handles:
            handle.remove()
        self.model.arm(int(activations.shape[0] * activations.shape[1]), skip_calls=0)
        return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)


class _AblationCAM(AblationCAM):
    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        self.model.arm(int(activations.shape[0] * activations.shape[1]), skip_calls=1)
        return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)


_CLASSES: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": _ScoreCAM,
    "ablationcam": _AblationCAM,
}


class _OnModelInput:
    """Mixin: upsample to the model input, not to the wrapper's input (the 7x7 activation)."""

    target_size: tuple[int, int]

    def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, int]:
        return self.target_size


@functools.cache
def _head_class(cls: type[BaseCAM]) -> type[BaseCAM]:
    return type(f"Head{cls.__name__}", (_OnModelInput, cls), {})


class _OwnThreadActivations(ActivationsAndGradients):
    """pytorch-grad-cam's recorder, deaf to forwards that other threads run meanwhile (a
    hook on a shared module fires for every caller, and the CAM reads the first record)."""

    def __init__(self, *args, **kwargs):
        self._owner = threading.get_ident()
        super().__init__(*args, **kwargs)

    def save_activation(self, module, input, output):
        if threading.get_ident() == self._owner:
            super().save_activation(module, input, output)

    def save_gradient(self, module, input, output):
        if threading.get_ident() == self._owner:
            super().save_gradient(module, input, output)


def _make_cam(method: str, cls: type[BaseCAM], model: nn.Module, layer: nn.Module, batch: int):
    if method == "ablationcam":
        # A fresh AblationLayer: the library's default argument is one instance shared by
        # every AblationCAM, which concurrent calls would corrupt.
        cam = cls(model, [layer], ablation_layer=AblationLayer(), batch_size=batch)
    else:
        cam = cls(model, [layer])
    if method == "scorecam":
        cam.batch_size = batch  # ScoreCAM reads this attribute if present (default 16)
    cam.activations_and_grads.release()
    cam.activations_and_grads = _OwnThreadActivations(
        cam.model, cam.target_layers, cam.reshape_transform, cam.detach
    )
    return cam


def _run_cam(cam: BaseCAM, method: str, x: torch.Tensor, targets) -> np.ndarray:
    grad = method in GRADIENT_METHODS
    try:
        with torch.enable_grad() if grad else torch.no_grad():
            return cam(x, targets)[0]
    finally:
        # Not ``with cam``: BaseCAM.__exit__ swallows IndexError.
        cam.activations_and_grads.release()


# --------------------------------------------------------------------------------------
# Engine


@dataclass
class _Trunk:
    activation: torch.Tensor  # CAM layer output [1, C, h, w], on bundle.device, no grad
    probs: np.ndarray
    size: tuple[int, int]  # original image size, a cheap check that a key means one image


class CamEngine:
    """Computes CAMs for one model; safe to call from several threads."""

    def __init__(self, bundle: ModelBundle, activation_cache_size: int = 4):
        self.bundle = bundle
        self.activation_cache_size = max(0, int(activation_cache_size))
        self.batch_size = DEFAULT_SLOW_BATCH_SIZE  # forward batch of ScoreCAM / AblationCAM
        self._cache: OrderedDict[Hashable, _Trunk] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._lock = model_lock(bundle.model)
        self._cam_layer = bundle.cam_layer  # resolved once: named_modules() per click adds up
        crop = bundle.preprocess.crop
        self._input_wh = (crop, crop)

    def uses_fast_path(self, method: str) -> bool:
        """Whether ``method`` runs on the head wrapper (trunk once, activation cached)."""
        return self.bundle.head is not None and method not in _FULL_PATH_ONLY

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def compute(
        self,
        image: Image.Image,
        method: str = "gradcam",
        target: int | None = None,
        *,
        key: Hashable | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> CamResult:
        """CAM of ``image`` (the original RGB image) for class ``target`` (None: predicted).

        ``key`` names the image (e.g. its id): its CAM-layer activation is kept for the last
        ``activation_cache_size`` keys, so another method or class for it skips the trunk.
        ``progress(done, total)``: slow methods call it after every forward batch (total = the
        CAM layer's channels); others once, ``(1, 1)``, at the end. ``cancel``: checked before
        the work and between batches; a set event raises ``CamCancelled``.
        """
        t0 = time.perf_counter()
        if method not in METHODS:
            raise FeatscopeError(f"unknown CAM method {method!r}; use one of {', '.join(METHODS)}")
        n_classes = len(self.bundle.class_names)
        if target is not None and not 0 <= int(target) < n_classes:
            raise FeatscopeError(f"class index {target} out of range (model has {n_classes})")
        _check(cancel)
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size

        if self.uses_fast_path(method):
            trunk = self._trunk(image, key)
            _check(cancel)
            tgt = int(np.argmax(trunk.probs)) if target is None else int(target)
            heat = self._head_cam(method, trunk.activation, tgt, progress, cancel)
            probs = trunk.probs
        else:
            heat, probs, tgt = self._full_cam(method, image, target, progress, cancel)
        if progress is not None and method not in SLOW_METHODS:
            progress(1, 1)

        heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
        original = self.bundle.preprocess.heatmap_to_original(heat, width, height)
        return CamResult(
            heatmap=heat,
            heatmap_original=original,
            target=tgt,
            method=method,
            probs=probs,
            seconds=time.perf_counter() - t0,
        )

    # -- internals ------------------------------------------------------------------------

    def _input(self, image: Image.Image) -> torch.Tensor:
        x = self.bundle.preprocess.to_tensor(image).to(self.bundle.device)
        if self.bundle.device.type in ("cpu", "cuda"):  # the model is channels_last there
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _trunk(self, image: Image.Image, key: Hashable | None) -> _Trunk:
        if key is not None:
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None and hit.size == image.size:
                    self._cache.move_to_end(key)
                    return hit
        x = self._input(image)
        acts: list[torch.Tensor] = []
        me = threading.get_ident()

        def keep(_m, _i, out):
            # Only this call's forward: another thread may run the shared model meanwhile.
            if threading.get_ident() == me:
                acts.append(out)

        with self._lock:
            handle = self._cam_layer.register_forward_hook(keep)
            try:
                with torch.no_grad():  # not inference_mode: A must be usable by autograd later
                    logits = self.bundle.model(x)
            finally:
                handle.remove()
        if not acts:
            raise FeatscopeError(f"CAM layer {self.bundle.cam_layer_name!r} was never called")
        probs = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy().astype(np.float32)
        trunk = _Trunk(activation=acts[0].detach(), probs=probs, size=image.size)
        if key is not None and self.activation_cache_size:
            with self._cache_lock:
                self._cache[key] = trunk
                self._cache.move_to_end(key)
                while len(self._cache) > self.activation_cache_size:
                    self._cache.popitem(last=False)
        return trunk

    def _head_cam(
        self,
        method: str,
        activation: torch.Tensor,
        target: int,
        progress: Callable[[int, int], None] | None,
        cancel: threading.Event | None,
    ) -> np.ndarray:
        # Everything here is per call (wrapper, hooks, ablation layer): no lock needed.
        wrapper = _HeadModel(self.bundle.head, activation.device)
        model: nn.Module = wrapper
        if method in SLOW_METHODS:
            model = _Progress(wrapper, progress, cancel)
        cam = _make_cam(method, _head_class(_CLASSES[method]), model, wrapper.cam_input, self.batch_size)
        cam.target_size = self._input_wh
        # A fresh leaf per call, so gradients never accumulate on the cached activation.
        a = activation.detach()
        if method in GRADIENT_METHODS:
            a = a.requires_grad_(True)
        return _run_cam(cam, method, a, [ClassifierOutputTarget(target)])

    def _full_cam(
        self,
        method: str,
        image: Image.Image,
        target: int | None,
        progress: Callable[[int, int], None] | None,
        cancel: threading.Event | None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        x = self._input(image)
        if method in GRADIENT_METHODS:
            # The model's parameters do not require grad; the input must, or the CAM layer's
            # output has no gradient to record.
            x = x.clone().requires_grad_(True)
        targets = None if target is None else [ClassifierOutputTarget(int(target))]
        if method in SLOW_METHODS:
            # Minutes of forward passes with hooks (and, for AblationCAM, a swapped-in layer):
            # on a private copy, so fast calls on the shared model are never blocked.
            net = self._private_copy()
            layer = resolve_module(net, self.bundle.cam_layer_name)
            model: nn.Module = _Progress(net, progress, cancel)
            guard = nullcontext()
        else:
            model, layer, guard = self.bundle.model, self._cam_layer, self._lock
        with guard:
            cam = _make_cam(method, _CLASSES[method], model, layer, self.batch_size)
            heat = _run_cam(cam, method, x, targets)
            logits = cam.outputs.detach()
        probs = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy().astype(np.float32)
        tgt = int(np.argmax(probs)) if target is None else int(target)
        return heat, probs, tgt

    def _private_copy(self) -> nn.Module:
        with self._lock:  # no caller's temporary hooks are on the model while we copy it
            net = copy.deepcopy(self.bundle.model)
        for m in net.modules():  # hooks left by others would fire into their owners' lists
            m._forward_hooks.clear()
            m._forward_pre_hooks.clear()
            m._backward_hooks.clear()
        return net


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CamCancelled()


# --------------------------------------------------------------------------------------
# Cost estimate


@dataclass
class _Profile:
    forward_s: float  # one image, batch 1
    per_image_batched_s: float  # per image in a batch of 4
    channels: int  # of the CAM layer's activation
    spatial: int  # its height x width


_PROFILES: weakref.WeakKeyDictionary[nn.Module, _Profile] = weakref.WeakKeyDictionary()


def _profile(bundle: ModelBundle) -> _Profile:
    prof = _PROFILES.get(bundle.model)
    if prof is not None:
        return prof
    crop = bundle.preprocess.crop
    shapes: list[tuple[int, ...]] = []
    me = threading.get_ident()

    def keep(_m, _i, out):
        if threading.get_ident() == me and torch.is_tensor(out):
            shapes.append(tuple(out.shape))

    def timed(n: int) -> float:
        x = torch.zeros(n, 3, crop, crop, device=bundle.device)
        t = time.perf_counter()
        with torch.inference_mode():
            bundle.model(x)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize(bundle.device)
        return time.perf_counter() - t

    with model_lock(bundle.model):
        handle = bundle.cam_layer.register_forward_hook(keep)
        try:
            timed(1)  # warm-up (allocator, kernel selection)
        finally:
            handle.remove()
    one = min(timed(1), timed(1))
    c, hw = (shapes[0][1], int(np.prod(shapes[0][2:]))) if shapes else (512, 49)
    prof = _Profile(one, timed(4) / 4, int(c), hw)
    _PROFILES[bundle.model] = prof
    return prof


def estimate_seconds(method: str, bundle: ModelBundle) -> float | None:
    """Rough wall time of one ``CamEngine.compute`` (first click on an image), or None for an
    unknown method. Times a couple of forward passes the first time it sees a model."""
    if method not in METHODS:
        return None
    prof = _profile(bundle)
    head = bundle.head is not None
    if method == "scorecam":  # one full forward per channel, batched
        return prof.forward_s + prof.channels * prof.per_image_batched_s
    if method == "ablationcam":
        # Per channel, AblationLayer scans the whole ablated batch (torch.min) once or twice.
        scan = DEFAULT_SLOW_BATCH_SIZE * prof.channels * prof.spatial * 2e-10
        per_channel = scan if head else scan + prof.per_image_batched_s
        return prof.forward_s + prof.channels * per_channel
    # Head path: about one forward; full path: forward + backward down to the input.
    base = prof.forward_s * (1.3 if head else 3.0)
    if method == "eigencam":  # a full SVD with a channels x channels V, in numpy
        base += 3e-11 * prof.channels**3
    return base


# --------------------------------------------------------------------------------------
# Display


def colorize(heatmap_original: np.ndarray) -> Image.Image:
    """Jet-coloured RGBA image of a [0, 1] heatmap; NaN (outside the crop) is transparent."""
    h = np.asarray(heatmap_original, dtype=np.float32)
    seen = np.isfinite(h)
    v = np.clip(np.where(seen, h, 0.0), 0.0, 1.0)
    # The classic jet ramp: blue -> cyan -> yellow -> red.
    rgb = np.stack([np.clip(1.5 - np.abs(4.0 * v - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)], axis=-1)
    rgba = np.zeros(h.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = np.where(seen[..., None], np.round(rgb * 255.0), 0).astype(np.uint8)
    rgba[..., 3] = np.where(seen, 255, 0).astype(np.uint8)
    return Image.fromarray(rgba)  # uint8 HxWx4: RGBA


def overlay(image: Image.Image, heatmap_original: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """``image`` blended with the jet heatmap; where the model never looked (NaN) the image is
    dimmed instead, so the cropped-off border reads as "not seen", not as "cold"."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    h = np.asarray(heatmap_original, dtype=np.float32)
    if h.shape != base.shape[:2]:
        raise ValueError(f"heatmap shape {h.shape} does not match image size {image.size}")
    heat = np.asarray(colorize(h), dtype=np.float32)
    seen = heat[..., 3:4] > 0
    a = float(np.clip(alpha, 0.0, 1.0))
    out = np.where(seen, (1.0 - a) * base + a * heat[..., :3], 0.5 * base)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))  # RGB
