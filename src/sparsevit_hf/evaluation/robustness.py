"""Test-time degradations for robustness sweeps: `jpeg:50,70,90 blur:3,7 noise:5,15` parsed into `Perturbation`s,
each applied to an image before the processor (the functions are those of `data.perturbations`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Kind -> type of its values: JPEG quality, Gaussian blur kernel size, Gaussian noise sigma (8-bit units).
PERTURBATION_KINDS = {"jpeg": int, "blur": int, "noise": float}


@dataclass(frozen=True)
class Perturbation:
    """One degradation: `jpeg` (quality), `blur` (kernel size) or `noise` (sigma in 8-bit units). Called on an
    `(H, W, 3)` uint8 array with a seed (used by `noise`), returns the degraded array."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        """`jpeg70`, `blur3`, `noise5.5`: the suffix of the evaluation set name (`casia@jpeg70`)."""
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.kind}{value}"

    def __call__(self, image: np.ndarray, seed: int = 0) -> np.ndarray:
        from PIL import Image

        from ..data import perturbations

        picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
        if self.kind == "jpeg":
            picture = perturbations.jpeg_compress(picture, int(self.value))
        elif self.kind == "blur":
            picture = perturbations.gaussian_blur(picture, int(self.value))
        else:
            picture = perturbations.gaussian_noise(picture, float(self.value), seed=seed)
        return np.asarray(picture)


def parse_robustness(specs: Iterable[str]) -> list[Perturbation]:
    """Parse `kind:v1,v2,...` items (`jpeg:50,70,90 blur:3,7 noise:5,15`) into checked `Perturbation`s, in order,
    without repeats. A bad kind or value raises `ValueError` with the perturbation function's own reason."""
    result: list[Perturbation] = []
    for spec in specs:
        kind, sep, values = str(spec).partition(":")
        kind = kind.strip().lower()
        if kind not in PERTURBATION_KINDS or not sep or not values.strip():
            raise ValueError(
                f"bad robustness spec {spec!r}: expected KIND:V1,V2,... with KIND one of "
                f"{', '.join(PERTURBATION_KINDS)} (e.g. jpeg:50,70,90 blur:3,7 noise:5,15)"
            )
        for text in values.split(","):
            try:
                value = PERTURBATION_KINDS[kind](text.strip())
            except ValueError:
                raise ValueError(f"bad value {text.strip()!r} in robustness spec {spec!r}") from None
            perturbation = Perturbation(kind, value)
            try:  # the perturbation functions validate their own arguments
                perturbation(np.zeros((8, 8, 3), dtype=np.uint8))
            except (TypeError, ValueError) as error:
                raise ValueError(f"bad robustness spec {spec!r}: {error}") from None
            if perturbation not in result:
                result.append(perturbation)
    return result
