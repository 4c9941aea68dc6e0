"""Joint image/mask augmentations of the SparseViT training recipe (albumentations 2.x).

`training_transforms` reproduces the official list, in order:

1. random scale 0.8-1.2 (`A.RandomScale`, always);
2. random copy-move, p 0.1 (`RandomCopyMove`: a box of the image is pasted elsewhere,
   the pasted box becomes tampered in the mask);
3. random inpainting of a box, p 0.1 (`RandomInpainting`: the box is filled with OpenCV's
   Telea inpainting and becomes tampered in the mask);
4. horizontal and vertical flips, p 0.5 each;
5. brightness / contrast +-0.1 (always);
6. JPEG re-compression at quality 70-100, p 0.2;
7. random 90-degree rotation, p 0.5;
8. Gaussian blur with a kernel of 3-7 pixels, p 0.2 (sigma 0.8-1.4: OpenCV's automatic sigma
   for those kernels, which the 1.x recipe relied on and albumentations 2.x no longer has);
9. resize to `size` (image bilinear, mask nearest).

Geometric steps move the mask with the image (nearest-neighbour for the mask); photometric steps
touch the image only. albumentations is an optional dependency (the `train` extra); it is
imported on first use.

Seeding: `training_transforms(seed=s)` gives the same sequence of augmentations for the same
inputs. (albumentations 2.0's `Compose(seed=...)` gives *every* transform the same seed, which
makes e.g. the two flips always fire together; here all transforms share one random stream.)
Inside `torch.utils.data.DataLoader` workers the stream is re-seeded automatically from the
worker's torch seed, so workers and epochs differ while a run stays reproducible under
`torch.manual_seed`; `JointTransform.set_seed` re-seeds explicitly.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "JointTransform",
    "training_transforms",
    "evaluation_transforms",
    "RandomCopyMove",  # noqa: F822 - defined lazily (module __getattr__), albumentations is optional
    "RandomInpainting",  # noqa: F822
]

_INSTALL_HINT = "the training augmentations need albumentations (with OpenCV): pip install sparsevit-hf[train]"


def _import_albumentations() -> Any:
    # albumentations 2.x checks PyPI for a newer version at import time unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
        import cv2  # noqa: F401 - albumentations' backend
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return A


def _mask_on_value(mask: np.ndarray) -> Any:
    if mask.dtype == np.bool_:
        return True
    return 255 if mask.size and mask.max() > 1 else 1


def _mark_box(mask: np.ndarray, origin: tuple[int, int], box: tuple[int, int]) -> np.ndarray:
    """A copy of `mask` with the box at `origin` marked tampered, in the mask's own convention."""
    (y, x), (bh, bw) = origin, box
    out = mask.copy()
    out[y : y + bh, x : x + bw] = _mask_on_value(mask)
    return out


_CUSTOM: dict[str, type] = {}


def _custom_classes() -> dict[str, type]:
    """Define the custom DualTransforms (needs albumentations, hence lazily)."""
    if _CUSTOM:
        return _CUSTOM
    A = _import_albumentations()
    import cv2

    def _box(rng: random.Random, h: int, w: int, size_range: tuple[float, float]) -> tuple[int, int]:
        bh = max(1, int(round(h * rng.uniform(*size_range))))
        bw = max(1, int(round(w * rng.uniform(*size_range))))
        return min(bh, h), min(bw, w)

    class RandomCopyMove(A.DualTransform):
        """Copy a random box of the image and paste it at another random place.

        The pasted box becomes tampered (1, True or 255 following the mask's convention) in the
        mask; the rest of the mask is unchanged. `size_range` is the box side as a fraction
        of the image side (drawn independently for height and width).
        """

        def __init__(self, size_range: tuple[float, float] = (0.1, 0.3), p: float = 0.5):
            super().__init__(p=p)
            if not 0.0 < size_range[0] <= size_range[1] <= 1.0:
                raise ValueError(f"size_range must satisfy 0 < low <= high <= 1, got {size_range}")
            self.size_range = tuple(size_range)

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            h, w = params["shape"][:2]
            bh, bw = _box(self.py_random, h, w, self.size_range)
            sy, sx = self.py_random.randint(0, h - bh), self.py_random.randint(0, w - bw)
            dy, dx = sy, sx
            for _ in range(10):  # prefer a destination that is not the source itself
                dy, dx = self.py_random.randint(0, h - bh), self.py_random.randint(0, w - bw)
                if (dy, dx) != (sy, sx):
                    break
            return {"src": (sy, sx), "dst": (dy, dx), "box": (bh, bw)}

        def apply(
            self, img: np.ndarray, src: tuple[int, int], dst: tuple[int, int], box: tuple[int, int], **params: Any
        ) -> np.ndarray:
            (sy, sx), (dy, dx), (bh, bw) = src, dst, box
            out = img.copy()
            out[dy : dy + bh, dx : dx + bw] = img[sy : sy + bh, sx : sx + bw]
            return out

        def apply_to_mask(
            self, mask: np.ndarray, dst: tuple[int, int], box: tuple[int, int], **params: Any
        ) -> np.ndarray:
            return _mark_box(mask, dst, box)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("size_range",)

    class RandomInpainting(A.DualTransform):
        """Erase a random box and fill it by inpainting (OpenCV Telea); the box becomes tampered."""

        def __init__(self, size_range: tuple[float, float] = (0.1, 0.3), radius: int = 3, p: float = 0.5):
            super().__init__(p=p)
            if not 0.0 < size_range[0] <= size_range[1] <= 1.0:
                raise ValueError(f"size_range must satisfy 0 < low <= high <= 1, got {size_range}")
            self.size_range = tuple(size_range)
            self.radius = int(radius)

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            h, w = params["shape"][:2]
            bh, bw = _box(self.py_random, h, w, self.size_range)
            return {"origin": (self.py_random.randint(0, h - bh), self.py_random.randint(0, w - bw)), "box": (bh, bw)}

        def apply(self, img: np.ndarray, origin: tuple[int, int], box: tuple[int, int], **params: Any) -> np.ndarray:
            (y, x), (bh, bw) = origin, box
            region = np.zeros(img.shape[:2], dtype=np.uint8)
            region[y : y + bh, x : x + bw] = 255
            src = np.ascontiguousarray(img)
            if src.dtype != np.uint8:
                raise TypeError(f"RandomInpainting needs a uint8 image, got {src.dtype}")
            return cv2.inpaint(src, region, self.radius, cv2.INPAINT_TELEA).reshape(img.shape)

        def apply_to_mask(
            self, mask: np.ndarray, origin: tuple[int, int], box: tuple[int, int], **params: Any
        ) -> np.ndarray:
            return _mark_box(mask, origin, box)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("size_range", "radius")

    for cls in (RandomCopyMove, RandomInpainting):
        # importable by name (through the module __getattr__), so instances pickle, e.g. into DataLoader workers
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    _CUSTOM.update(RandomCopyMove=RandomCopyMove, RandomInpainting=RandomInpainting)
    return _CUSTOM


def __getattr__(name: str) -> Any:  # lazy access to the custom transform classes
    if name in ("RandomCopyMove", "RandomInpainting"):
        return _custom_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class JointTransform:
    """Applies an albumentations pipeline jointly to an image and its mask.

    Call it as `image, mask = transform(image, mask)` with `image` an `(H, W, 3)` (or
    `(H, W)`) uint8 array and `mask` an `(H, W)` bool or uint8 array (0/1 or 0/255) or
    `None` (an all-zero mask). The image comes back `(h, w, 3)` uint8, the mask `(h, w)` in
    the input's convention: bool stays bool, uint8 0/255 stays 0/255, otherwise uint8 0/1.
    """

    def __init__(self, compose: Any, seed: int | None = None):
        self.compose = compose
        self._worker_seeded: int | None = None
        self.set_seed(seed)

    def set_seed(self, seed: int | None) -> None:
        """Restart the random stream from `seed` (`None`: fresh OS entropy)."""
        self.seed = seed
        self._set_stream(seed if seed is None else [int(seed) % (1 << 63)])

    def _set_stream(self, entropy: Any) -> None:
        seq = np.random.SeedSequence(entropy)
        np_rng = np.random.default_rng(seq)
        py_rng = random.Random(int(seq.generate_state(2, np.uint64)[0]))
        self.compose.set_random_state(np_rng, py_rng)

    def _maybe_reseed_for_worker(self) -> None:
        torch = sys.modules.get("torch")
        if torch is None:
            return
        info = torch.utils.data.get_worker_info()
        if info is None or self._worker_seeded == info.seed:
            return
        self._worker_seeded = info.seed
        base = [] if self.seed is None else [int(self.seed) % (1 << 63)]
        self._set_stream(base + [int(info.seed) % (1 << 63)])

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.dtype != np.uint8:
            raise TypeError(f"image must be uint8, got {image.dtype}")
        if mask is None:
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
        mask = np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
        if mask.dtype == np.bool_:
            out_kind = "bool"
        elif mask.size and mask.max() > 1:
            out_kind = "255"
        else:
            out_kind = "1"
        binary = (mask > (127 if out_kind == "255" else 0)).astype(np.uint8)
        self._maybe_reseed_for_worker()
        result = self.compose(image=np.ascontiguousarray(image), mask=binary)
        out_mask = result["mask"] > 0
        if out_kind == "bool":
            return result["image"], out_mask
        return result["image"], out_mask.astype(np.uint8) * (255 if out_kind == "255" else 1)

    def __repr__(self) -> str:
        return f"JointTransform(seed={self.seed}, compose={self.compose!r})"


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _interp(name: str) -> int:
    import cv2

    table = {
        "nearest": cv2.INTER_NEAREST,
        "bilinear": cv2.INTER_LINEAR,
        "bicubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
    }
    if name not in table:
        raise ValueError(f"interpolation must be one of {', '.join(table)}, got {name!r}")
    return table[name]


def training_transforms(
    size: int | Sequence[int] = 512,
    seed: int | None = None,
    *,
    scale_range: tuple[float, float] = (0.8, 1.2),
    copy_move_p: float = 0.1,
    inpainting_p: float = 0.1,
    flip_p: float = 0.5,
    brightness_limit: float = 0.1,
    contrast_limit: float = 0.1,
    jpeg_p: float = 0.2,
    jpeg_quality_range: tuple[int, int] = (70, 100),
    rotate90_p: float = 0.5,
    blur_p: float = 0.2,
    blur_kernel_range: tuple[int, int] = (3, 7),
    blur_sigma_range: tuple[float, float] = (0.8, 1.4),
    interpolation: str = "bilinear",
) -> JointTransform:
    """The official training augmentations as a seeded joint image/mask callable.

    Defaults reproduce the SparseViT recipe (see the module docstring); every probability and
    range can be changed (set a probability to 0 to drop a step). `size` is the output side
    (or `(height, width)`); `interpolation` (`"bilinear"`, `"bicubic"`, `"area"` or
    `"nearest"`) is used for the image by the scale and resize steps, the mask always uses
    nearest neighbour.

    Raises:
        ImportError: albumentations is not installed (`pip install sparsevit-hf[train]`).
    """
    A = _import_albumentations()
    import cv2

    custom = _custom_classes()
    h, w = _size_hw(size)
    interp = _interp(interpolation)
    lo, hi = scale_range
    steps = [
        A.RandomScale(
            scale_limit=(lo - 1.0, hi - 1.0), interpolation=interp, mask_interpolation=cv2.INTER_NEAREST, p=1.0
        ),
        custom["RandomCopyMove"](p=copy_move_p),
        custom["RandomInpainting"](p=inpainting_p),
        A.HorizontalFlip(p=flip_p),
        A.VerticalFlip(p=flip_p),
        A.RandomBrightnessContrast(
            brightness_limit=(-brightness_limit, brightness_limit),
            contrast_limit=(-contrast_limit, contrast_limit),
            p=1.0 if (brightness_limit or contrast_limit) else 0.0,
        ),
        A.ImageCompression(compression_type="jpeg", quality_range=tuple(jpeg_quality_range), p=jpeg_p),
        A.RandomRotate90(p=rotate90_p),
        A.GaussianBlur(blur_limit=tuple(blur_kernel_range), sigma_limit=tuple(blur_sigma_range), p=blur_p),
        A.Resize(height=h, width=w, interpolation=interp, mask_interpolation=cv2.INTER_NEAREST, p=1.0),
    ]
    return JointTransform(A.Compose(steps, p=1.0), seed=seed)


def evaluation_transforms(
    size: int | Sequence[int] | None = None, *, interpolation: str = "bilinear"
) -> JointTransform:
    """Evaluation-time transform: the identity, or a resize to `size` if given.

    (The image processor does the model's own resizing and normalisation; use this only when a
    data pipeline needs fixed-size arrays.)
    """
    A = _import_albumentations()
    import cv2

    steps = []
    if size is not None:
        h, w = _size_hw(size)
        steps.append(
            A.Resize(
                height=h, width=w, interpolation=_interp(interpolation), mask_interpolation=cv2.INTER_NEAREST, p=1.0
            )
        )
    return JointTransform(A.Compose(steps, p=1.0), seed=0)
