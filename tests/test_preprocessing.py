"""The model-input geometry and its inverse: heatmaps line up with the original image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from featscope.preprocessing import Preprocess

PRE = Preprocess(resize=256, crop=224)


def test_resize_and_crop_box_follow_torchvision():
    assert PRE.resized_size(500, 375) == (341, 256)
    assert PRE.resized_size(300, 600) == (256, 512)
    assert PRE.crop_box(500, 375) == (58, 16, 282, 240)


def test_to_array_matches_torchvision_transforms():
    import torch
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8))
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                     T.Normalize(PRE.mean, PRE.std)])(img)
    ours = torch.from_numpy(PRE.to_array(img))
    assert ours.shape == ref.shape == (3, 224, 224)
    assert float((ours - ref).abs().mean()) < 0.02  # same geometry, same scaling


def test_heatmap_spot_lands_on_the_same_object_in_the_original():
    w, h = 500, 375
    # An object at a known place in the original ...
    ox, oy = 300, 120
    orig = np.zeros((h, w, 3), np.uint8)
    orig[oy - 5 : oy + 5, ox - 5 : ox + 5] = 255
    x = PRE.to_array(Image.fromarray(orig))[0]
    # ... appears at some place in the model input; a heatmap peaked there maps back to it.
    ys, xs = np.nonzero(x > x.max() * 0.5)
    iy, ix = int(round(ys.mean())), int(round(xs.mean()))
    heat = np.zeros((224, 224), np.float32)
    heat[iy - 3 : iy + 4, ix - 3 : ix + 4] = 1.0
    back = PRE.heatmap_to_original(heat, w, h)
    assert back.shape == (h, w)
    ys, xs = np.nonzero(np.nan_to_num(back) > 0.5)
    assert abs(xs.mean() - ox) <= 3 and abs(ys.mean() - oy) <= 3
    mx, my = PRE.point_to_original(ix + 0.5, iy + 0.5, w, h)
    assert abs(mx - ox) <= 3 and abs(my - oy) <= 3


def test_regions_cut_off_by_the_crop_are_nan():
    w, h = 500, 375
    back = PRE.heatmap_to_original(np.ones((224, 224), np.float32), w, h)
    left, top, right, bottom = PRE.crop_box(w, h)
    sx, sy = w / PRE.resized_size(w, h)[0], h / PRE.resized_size(w, h)[1]
    assert np.isnan(back[:, : int(left * sx) - 2]).all()  # left strip the model never saw
    assert np.isnan(back[:, int(right * sx) + 2 :]).all()
    inner = back[int(top * sy) + 2 : int(bottom * sy) - 2, int(left * sx) + 2 : int(right * sx) - 2]
    assert not np.isnan(inner).any() and np.allclose(inner, 1.0)
