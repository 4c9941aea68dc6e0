# Copyright 2025 The sparsevit-hf authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image processor for SparseViT (image manipulation localization).

Remote code: it depends only on transformers, NumPy, Pillow, torch (for tensors and post-processing) and its sibling
`image_decoding_sparsevit.py`, the package's one decoder, through which files and PIL images give the pixels and masks
that training and prediction get from them. No torchvision: it is built on transformers' PIL/NumPy backend.
"""

import os

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_outputs import SemanticSegmentationPostProcessorOutput
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import is_torch_available

from .image_decoding_sparsevit import (
    array_to_mask,
    canonical_pixels,
    channels_last,
    check_channels,
    decode_pixels,
    to_8_bit,
)
from .localization_sparsevit import (
    MIN_IMAGE_SIDE,
    check_logits_cover,
    padded_size,
    parse_target_size,
    segments_info,
)

if is_torch_available():
    import torch
    import torch.nn.functional as F



class SparseViTImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    size_divisor (`int`, *optional*, defaults to 32):
        When `do_pad` is `True`, images (and masks) are padded at the bottom and on the right, with zeros in the
        normalised space, to a height and width that are multiples of this value (and to the largest size in the
        batch, or to `pad_size` when given).
    """

    size_divisor: int | None


class SparseViTImageProcessor(PilBackend):
    r"""
    Image processor for SparseViT image manipulation localization.

    - **Resize mode** (default, the official preprocessing): images are resized bilinearly (Pillow) to `size`
      (512 x 512), rescaled by `rescale_factor` (1/255) and normalised with the ImageNet mean (0.485, 0.456, 0.406)
      and standard deviation (0.229, 0.224, 0.225).
    - **Native mode** (`do_resize=False`): images keep their resolution and, after normalisation, are padded at the
      bottom and right with zeros (0 in normalised space) to a multiple of `size_divisor` (32) and to the largest
      size of the batch, top-left aligned. No key is added: `post_process_semantic_segmentation` undoes the padding
      from the original image sizes (`target_sizes`).

    Images (one, a list, or a 4-D array or tensor holding a batch along its first axis):

    - Local file paths and PIL images are read by the package's one decoder (`image_decoding_sparsevit`), exactly as
      the data loaders and prediction read them: EXIF orientation applied; alpha **dropped**, not composited (like
      OpenCV or `Image.convert("RGB")` in the official pipeline); palettes, CMYK and YCbCr converted by Pillow; grey
      and bilevel replicated to RGB; 16-bit data scaled to 8 bits (`round(v / 257)`); mode `I` read as 8-bit data
      when its values fit in 0-255, as 16-bit data when they fit in 0-65535; float (`F`) data in [0, 1] scaled to
      8 bits.
    - NumPy arrays `(H, W)`, `(H, W, C)` or `(C, H, W)` and torch tensors `(C, H, W)` or `(H, W, C)`: the channel
      axis is the one of size 1, 3 or 4 (on a tie channels-first for torch, channels-last for NumPy) unless
      `input_data_format` says. `uint8` is 0-255; `uint16` is scaled by 1/65535; floats must be finite and in
      [0, 1] (not rescaled); `bool` is 0/1; other integer types must hold 0-255. 8-bit images are resized in 8 bit
      (like the official pipeline), the others in float32 without quantisation (Pillow mode `F`, per channel).
      `do_rescale` applies to 8-bit data only.

    Segmentation maps (`segmentation_maps=`, one per image, `None` for an authentic image) take the same forms and
    become `labels`, float32 0/1 of shape `(batch, height, width)`. The decoder binarises them the official way: the
    mean over the channels (alpha dropped, palette applied) above half of full scale, `> 127.5` for 8-bit masks,
    `> 32767.5` for 16-bit masks, `> 0.5` for float masks in [0, 1]. Boolean masks and integer masks holding only 0
    and 1 are label maps of full scale 1, read like their 0/255 versions (the official rule would make them empty).
    Masks are resized with nearest neighbour in resize mode and padded with 0 in native mode; a mask must have the
    size of its image.

    Every input problem raises a `ValueError` naming it and the index of the image in the batch (or the file): an
    empty batch, 2 or 5 channels, non-finite values, floats outside [0, 1], images under 32 x 32 pixels, a mask of
    another size than its image, different numbers of images and masks.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Resize images to `size` (resize mode) or keep their resolution (native mode).
        size (`dict[str, int]`, *optional*, defaults to `{"height": 512, "width": 512}`):
            Output size in resize mode.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
            Resampling filter for images (masks always use nearest neighbour).
        do_rescale (`bool`, *optional*, defaults to `True`), rescale_factor (`float`, *optional*, defaults to `1/255`):
            Whether and by how much to scale 8-bit images.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise with `image_mean` and `image_std`.
        image_mean, image_std (`float` or `list[float]`, *optional*, default to the ImageNet mean and std):
            Mean and standard deviation per channel.
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Convert images to 3-channel RGB. With `False` the channels of arrays are kept as given (the model itself
            needs 3 channels; this exists for API compatibility).
        do_pad (`bool`, *optional*, defaults to `True`):
            Pad bottom/right with zeros to a multiple of `size_divisor` and to the largest size of the batch (a no-op
            in resize mode with the default size).
        size_divisor (`int`, *optional*, defaults to 32):
            The multiple that padded heights and widths are rounded up to.
        pad_size (`dict[str, int]`, *optional*):
            A fixed padded size (height, width) instead of the largest size of the batch; a multiple of
            `size_divisor`, at least as large as every image.
    """

    valid_kwargs = SparseViTImageProcessorKwargs
    model_input_names = ["pixel_values"]

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 512, "width": 512}
    default_to_square = True
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_center_crop = False
    do_pad = True
    size_divisor = 32

    def preprocess(self, images, segmentation_maps=None, **kwargs: Unpack[SparseViTImageProcessorKwargs]):
        r"""
        Preprocess images (see the class docstring for the accepted forms) and, optionally, their masks
        (`segmentation_maps`, one per image, `None` for an authentic image); `kwargs` override the processor's options
        for this call. Returns [`BatchFeature`] with `pixel_values` (float32 `(batch, 3, height, width)`) and `labels`
        (float32 `(batch, height, width)`, 0/1) when masks are given; lists of NumPy arrays with `return_tensors=None`.
        """
        return super().preprocess(images, segmentation_maps, **kwargs)

    def process_image(self, image, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs) -> np.ndarray:
        """Convert one raw image to a channels-first array (`uint8`, or `float32` in [0, 1] for other inputs)."""
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        return self._image_to_array(image, "Image 0 in the batch", do_convert_rgb, input_data_format)

    def _validate_preprocess_kwargs(self, **kwargs):
        super()._validate_preprocess_kwargs(**kwargs)
        size, divisor, pad_size = kwargs.get("size"), kwargs.get("size_divisor"), kwargs.get("pad_size")
        if kwargs.get("do_center_crop"):
            raise ValueError("SparseViTImageProcessor does not center crop; set `do_center_crop=False`.")
        if divisor is not None and (isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1):
            raise ValueError(f"`size_divisor` must be a positive integer or None, got {divisor!r}.")
        if kwargs.get("do_resize"):
            if size is None or not size.height or not size.width:
                raise ValueError(f"`size` must be a dictionary with 'height' and 'width', got {size}.")
            if size.height < MIN_IMAGE_SIDE or size.width < MIN_IMAGE_SIDE:
                minimum = f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"
                raise ValueError(f"`size` ({size.height}x{size.width}) is below the minimum of {minimum} pixels.")
            if kwargs.get("do_pad") and divisor and (size.height % divisor or size.width % divisor):
                raise ValueError(
                    f"`size` ({size.height}x{size.width}) must be a multiple of `size_divisor` ({divisor}) when "
                    "`do_pad=True`: padding a resized image would shift the mapping back to the original size."
                )
        if kwargs.get("do_pad") and pad_size is not None:
            if not pad_size.height or not pad_size.width:
                raise ValueError(f"`pad_size` must have 'height' and 'width', got {pad_size}.")
            if divisor and (pad_size.height % divisor or pad_size.width % divisor):
                raise ValueError(
                    f"`pad_size` ({pad_size.height}x{pad_size.width}) must be a multiple of `size_divisor` ({divisor})."
                )

    def _preprocess_image_like_inputs(
        self, images, segmentation_maps=None, do_convert_rgb=True, input_data_format=None, return_tensors=None, **kwargs
    ) -> BatchFeature:
        image_list = _flatten_batch(images, "image", allow_none=False)
        arrays = [
            self._image_to_array(image, f"Image {index} in the batch", do_convert_rgb is not False, input_data_format)
            for index, image in enumerate(image_list)
        ]
        data = dict(self._preprocess(arrays, return_tensors=None, **kwargs))
        if segmentation_maps is not None:
            mask_list = _flatten_batch(segmentation_maps, "segmentation map", allow_none=True)
            if len(mask_list) != len(image_list):
                raise ValueError(
                    f"Got {len(image_list)} image(s) but {len(mask_list)} segmentation map(s); pass exactly one "
                    "segmentation map (or None for an authentic image) per image."
                )
            masks = []
            for index, (mask, array) in enumerate(zip(mask_list, arrays, strict=True)):
                what = f"Segmentation map {index} in the batch"
                binary = np.zeros(array.shape[-2:], bool) if mask is None else self._mask(mask, what, input_data_format)
                if binary.shape != array.shape[-2:]:
                    raise ValueError(
                        f"{what} has size {binary.shape[0]}x{binary.shape[1]} (height x width) but its image has size "
                        f"{array.shape[-2]}x{array.shape[-1]}; a mask must have the size of its image."
                    )
                masks.append(binary)
            data["labels"] = self._preprocess_masks(masks, **kwargs)

        if return_tensors is not None:
            shapes = {tuple(array.shape) for array in data["pixel_values"]}
            if len(shapes) > 1:
                raise ValueError(
                    f"Cannot stack images of different sizes {sorted(shapes)} into one tensor; use `do_pad=True` "
                    "or `return_tensors=None`."
                )
            data = {key: np.stack(value, axis=0) for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _preprocess(
        self, images, do_resize=True, size=None, resample=None, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=None, image_std=None, do_pad=True, pad_size=None, size_divisor=None,
        data_format=None, **kwargs,
    ) -> BatchFeature:
        """Resize, rescale, normalise and pad already converted channels-first images."""
        processed = []
        for image in images:
            if do_resize:
                image = self.resize(image, size=size, resample=resample)
            if image.dtype == np.uint8:
                image = self.rescale(image, rescale_factor) if do_rescale else image.astype(np.float32)
            if do_normalize:
                image = self.normalize(image.astype(np.float32, copy=False), image_mean, image_std)
            processed.append(image)
        if do_pad:
            target = padded_size([image.shape[-2:] for image in processed], pad_size, size_divisor)
            processed = self.pad(processed, pad_size=target)
        if data_format is not None and ChannelDimension(data_format) == ChannelDimension.LAST:
            processed = [np.moveaxis(image, 0, -1) for image in processed]
        processed = [np.ascontiguousarray(image, dtype=np.float32) for image in processed]
        return BatchFeature(data={"pixel_values": processed}, tensor_type=None)

    def _preprocess_masks(self, masks, do_resize=True, size=None, do_pad=True, pad_size=None, size_divisor=None, **_):
        """Resize (nearest neighbour) and pad binary `(H, W)` masks; returns float32 0/1 arrays."""
        processed = []
        for mask in masks:
            mask = mask.astype(np.uint8)
            if do_resize and mask.shape != (size.height, size.width):
                resized = Image.fromarray(mask).resize((size.width, size.height), resample=PILImageResampling.NEAREST)
                mask = np.asarray(resized)
            processed.append(mask.astype(np.float32)[None])
        if do_pad:
            target = padded_size([mask.shape[-2:] for mask in processed], pad_size, size_divisor)
            processed = self.pad(processed, pad_size=target)
        return [np.ascontiguousarray(mask[0]) for mask in processed]

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a channels-first image to `(size.height, size.width)` with Pillow, channel by channel: `uint8` in
        8 bit (as an RGB image would be), any other dtype in float32 (Pillow mode `F`), without quantisation."""
        resample = PILImageResampling.BILINEAR if resample is None else resample
        if not isinstance(resample, int):
            raise ValueError(f"`resample` must be a PIL resampling filter, got {resample!r}.")
        if image.shape[-2:] == (size.height, size.width):
            return image
        dtype = np.uint8 if image.dtype == np.uint8 else np.float32
        channels = [Image.fromarray(np.ascontiguousarray(channel, dtype=dtype)) for channel in image]
        return np.stack([np.asarray(c.resize((size.width, size.height), resample=resample)) for c in channels])

    def _image_to_array(self, image, what: str, do_convert_rgb: bool, input_data_format) -> np.ndarray:
        """One image as channels-first `uint8`, or `float32` in [0, 1] for 16-bit/float/bool arrays."""
        if isinstance(image, (str, os.PathLike, Image.Image)):
            array = to_8_bit(_decoded(image, what), what)  # files and PIL images: the decoder's 8-bit pixels
        else:
            array = canonical_pixels(_channels_last(image, what, input_data_format), what)
        array = check_channels(array, what) if do_convert_rgb else array[..., None] if array.ndim == 2 else array
        if do_convert_rgb:
            array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
        if array.shape[0] < MIN_IMAGE_SIDE or array.shape[1] < MIN_IMAGE_SIDE:
            raise ValueError(
                f"{what} is {array.shape[0]}x{array.shape[1]} pixels (height x width); the minimum size is "
                f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}."
            )
        return np.ascontiguousarray(np.moveaxis(array, -1, 0))

    @staticmethod
    def _mask(mask, what: str, input_data_format) -> np.ndarray:
        """Binarise one mask the official way (the decoder's rule); returns a boolean `(H, W)` array."""
        if isinstance(mask, (str, os.PathLike, Image.Image)):
            return array_to_mask(_decoded(mask, what), what)
        return array_to_mask(_channels_last(mask, what, input_data_format), what)

    def post_process_semantic_segmentation(
        self,
        outputs,
        target_sizes=None,
        threshold: float = 0.5,
        return_probabilities: bool = False,
        return_segmentation_scores: bool = False,
        do_resize: bool | None = None,
        do_pad: bool | None = None,
    ):
        r"""
        Turn SparseViT logits into per-pixel label maps (0 = authentic, 1 = manipulated).

        The logits `(batch, 1, h, w)` cover the model input at the stride of the model's patch sizes (16 for the
        published model). They are upsampled bilinearly (`align_corners=False`) to the model input as the
        preprocessing built it, whatever the stride, and passed through a sigmoid: the probability that each pixel
        was manipulated. Then, per image, in resize mode (`do_resize=True`) the `size` region (the whole input unless
        padded to `pad_size`) is resized bilinearly to the target size; in native mode the input is the padded batch
        (the largest target size rounded up to `size_divisor`, or `pad_size`, or without padding the target size)
        and the top-left target-size region is cropped, which exactly undoes the padding.

        Args:
            outputs: model output with `logits` (attribute or key), or the logits tensor itself.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` `(batch, 2)`, *optional*):
                `(height, width)` of each original image; required in native mode. If unset, maps have the size
                `size`.
            threshold (`float`, *optional*, defaults to 0.5):
                A pixel is manipulated when its probability is strictly greater; must be in [0, 1].
            return_probabilities, return_segmentation_scores (`bool`, *optional*, default to `False`):
                Also return the probabilities (either name; the second is the transformers-wide one).
            do_resize, do_pad (`bool`, *optional*):
                The preprocessing's switches, by default the processor's; pass them when the preprocessing call
                overrode them.

        Returns:
            A list (one per image) of `torch.LongTensor` label maps `(height, width)`; with probabilities, a list of
            [`~image_processing_outputs.SemanticSegmentationPostProcessorOutput`] with `segmentation` (that map),
            `probabilities` (float32 `(height, width)`) and `segmentation_scores` (float32 `(2, height, width)`,
            `[1 - p, p]` in the order of `id2label` `{0: "authentic", 1: "manipulated"}`).
        """
        if not is_torch_available():
            raise ImportError("`post_process_semantic_segmentation` requires PyTorch.")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be a number in [0, 1], got {threshold!r}.")
        do_resize = self.do_resize if do_resize is None else do_resize
        do_pad = self.do_pad if do_pad is None else do_pad
        logits = _get_logits(outputs)
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"Expected logits of shape (batch_size, 1, height, width), got {tuple(logits.shape)}.")
        batch_size = logits.shape[0]
        if target_sizes is not None:
            target_sizes = target_sizes.tolist() if isinstance(target_sizes, torch.Tensor) else target_sizes
            if len(target_sizes) != batch_size:
                raise ValueError(
                    f"Got {len(target_sizes)} target sizes for a batch of {batch_size}; pass one (height, width) per "
                    "image."
                )
            target_sizes = [parse_target_size(size, index) for index, size in enumerate(target_sizes)]
        elif not do_resize:
            raise ValueError(
                "In native mode (do_resize=False) pass `target_sizes`, the original (height, width) of every image "
                "of the batch: the padded model input is derived from them."
            )

        # The attributes may have been set to plain dictionaries after construction.
        size, pad_size = (SizeDict(**v) if isinstance(v, dict) else v for v in (self.size, self.pad_size))
        valid = [(size.height, size.width)] * batch_size if do_resize else target_sizes
        input_size = padded_size(valid, pad_size if do_pad else None, self.size_divisor if do_pad else None)
        check_logits_cover(tuple(logits.shape[-2:]), (input_size.height, input_size.width))
        upsampled = F.interpolate(
            logits.detach().float(), size=(input_size.height, input_size.width), mode="bilinear", align_corners=False
        )
        probabilities = upsampled.sigmoid()[:, 0]

        maps = []
        for index in range(batch_size):
            height, width = valid[index]
            probability = probabilities[index, :height, :width]
            if do_resize and target_sizes is not None and target_sizes[index] != (height, width):
                probability = F.interpolate(
                    probability[None, None], size=target_sizes[index], mode="bilinear", align_corners=False
                )[0, 0]
            maps.append(probability.contiguous())

        segmentations = [(probability > threshold).long() for probability in maps]
        if not (return_probabilities or return_segmentation_scores):
            return segmentations
        return [
            SemanticSegmentationPostProcessorOutput(
                data={
                    "segmentation": segmentation,
                    "probabilities": probability,
                    "segmentation_scores": torch.stack([1.0 - probability, probability], dim=0),
                }
            )
            for segmentation, probability in zip(segmentations, maps, strict=True)
        ]

    def post_process_panoptic_segmentation(
        self,
        outputs,
        threshold: float | None = None,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float | None = None,
        target_sizes=None,
        do_resize: bool | None = None,
    ):
        r"""
        The thresholded map as segments with scores: the format through which `pipeline("image-segmentation")`
        gives each mask a numeric `score` (its semantic format has `score: None`).

        The label map is that of [`~SparseViTImageProcessor.post_process_semantic_segmentation`] at
        `mask_threshold`, so the segments cover the same pixels as the semantic format's masks. There is one segment
        per label present (0 "authentic", 1 "manipulated"), whose id is its label id, and whose score is the **mean,
        over the segment's pixels, of the probability of its label**: the mean of `p` inside the manipulated region,
        the mean of `1 - p` inside the authentic one (so the first is above `mask_threshold` and the second at least
        `1 - mask_threshold`).

        Args:
            outputs: model output with `logits`, or the logits tensor.
            threshold (`float`, *optional*):
                Accepted because the pipeline passes it (default 0.9) to every panoptic post-processing, where it
                drops mask-classification models' low-scoring candidate segments. SparseViT has no candidates: its
                segments are the thresholded map, so nothing is dropped and this value is not used. Set the pixel
                threshold with `mask_threshold`.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                A pixel is manipulated when its probability is strictly greater than this value (the pipeline's
                `mask_threshold=` argument).
            overlap_mask_area_threshold (`float`, *optional*):
                Accepted for the same reason as `threshold` and not used: two complementary segments never overlap.
            target_sizes, do_resize: as in `post_process_semantic_segmentation`.

        Returns:
            A list (one per image) of dicts with `segmentation` (`torch.LongTensor` `(height, width)`, the segment id
            of each pixel) and `segments_info` (a list of `{"id", "label_id", "was_fused", "score"}`, `score` a
            Python float in [0, 1]).
        """
        results = self.post_process_semantic_segmentation(
            outputs, target_sizes=target_sizes, threshold=mask_threshold, return_probabilities=True, do_resize=do_resize
        )
        return [
            {"segmentation": labels, "segments_info": segments_info(labels, probability)}
            for labels, probability in ((result["segmentation"], result["probabilities"]) for result in results)
        ]


def _is_torch_tensor(value) -> bool:
    return is_torch_available() and isinstance(value, torch.Tensor)


def _decoded(image, what: str) -> np.ndarray:
    """Pixels of a file or PIL image by the package's decoder, at their own depth; errors name the file."""
    return decode_pixels(image, f"{what} ({os.fspath(image)})" if isinstance(image, (str, os.PathLike)) else what)


def _flatten_batch(inputs, kind: str, allow_none: bool) -> list:
    """Turn a single image, a list of images or a 4-D array/tensor into a flat list."""
    if inputs is None:
        raise ValueError(f"No {kind} given: the batch is empty.")
    is_array = isinstance(inputs, np.ndarray) or _is_torch_tensor(inputs)
    items = list(inputs) if isinstance(inputs, (list, tuple)) or (is_array and inputs.ndim == 4) else [inputs]
    if len(items) == 0:
        raise ValueError(f"Got an empty batch: at least one {kind} is required.")
    for index, item in enumerate(items):
        if item is None and not allow_none:
            raise ValueError(f"{kind.capitalize()} {index} in the batch is None.")
        supported = isinstance(item, (Image.Image, str, os.PathLike, np.ndarray)) or _is_torch_tensor(item)
        if item is not None and not supported:
            raise ValueError(
                f"{kind.capitalize()} {index} in the batch has unsupported type {type(item).__name__}; expected a "
                "PIL image, a NumPy array, a torch tensor or a path to a local file."
            )
    return items


def _channels_last(image, what: str, input_data_format) -> np.ndarray:
    """An `(H, W)` or `(H, W, C)` NumPy view of an array or tensor (half precision widened to float32); on a layout tie
    channels come first for tensors and last for arrays."""
    channels_first = None
    if input_data_format is not None:
        channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
    if not _is_torch_tensor(image):
        return channels_last(image, what, channels_first, prefer_channels_first=False)
    tensor = image.detach().cpu()
    array = (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()
    return channels_last(array, what, channels_first, prefer_channels_first=True)


def _get_logits(outputs):
    if _is_torch_tensor(outputs):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if logits is None:
        raise ValueError("`outputs` must be a model output with `logits`, a dict with 'logits' or a tensor.")
    return logits


__all__ = ["SparseViTImageProcessor"]
