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

This module depends only on transformers, numpy, Pillow and (for tensors and post-processing) torch, so it can be
shipped as remote code on its own. It never needs torchvision: it is built on transformers' PIL/NumPy backend
(`PilBackend`).
"""

import math
import os

import numpy as np
from PIL import Image, ImageOps
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
from transformers.utils import TensorType, is_torch_available

if is_torch_available():
    import torch
    import torch.nn.functional as F



# Smallest accepted input side: the backbone downsamples by 32 (four stages), so anything smaller has no pixel left
# at the last stage.
MIN_IMAGE_SIZE = 32
# The model predicts its logit map at 1/16 of the input resolution (the stride of backbone stage 3).
LOGITS_STRIDE = 16
# Float images must lie in [0, 1]; values at most one 8-bit level outside are clipped, anything beyond is an error.
_FLOAT_RANGE_TOLERANCE = 1.0 / 255.0
_VALID_CHANNEL_COUNTS = (1, 3, 4)


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

    Two modes are available:

    - **Resize mode** (default, the official SparseViT preprocessing): every image is converted to RGB, resized
      bilinearly (Pillow) to `size` (512 x 512), rescaled by `rescale_factor` (1/255) and normalised with the ImageNet
      mean (0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225).
    - **Native mode** (`do_resize=False`): every image keeps its own resolution; after normalisation it is padded at
      the bottom and on the right with zeros (0 in normalised space) to a multiple of `size_divisor` (32). A batch of
      images of different sizes is padded to the common (largest) size, top-left aligned. No extra key is added to
      the output: the padding is undone by [`~SparseViTImageProcessor.post_process_semantic_segmentation`] from the
      original image sizes (`target_sizes`), because the valid region is always the top-left `target_size` one.

    Accepted images (single or a list; a 4-D array or tensor is read as a batch along its first axis):

    - `PIL.Image.Image` in any common mode: `RGB`; `L` and `1` (replicated to RGB); `RGBA`, `RGBX`, `LA`, `PA`
      (alpha is **dropped**, not composited, exactly like decoding with `Image.convert("RGB")` or OpenCV does in the
      official pipeline); `P` (through its palette); `CMYK`, `YCbCr` (Pillow's conversion to RGB); 16-bit `I;16*`
      and `I` (scaled by 1/65535); `F` (float, must be in [0, 1]).
    - NumPy arrays `(H, W)`, `(H, W, C)` or `(C, H, W)` and torch tensors `(C, H, W)` (or `(H, W, C)`); the channel
      axis is the one of size 1, 3 or 4 (for torch tensors channels-first wins a tie, for NumPy channels-last), or as
      given by `input_data_format`. dtypes: `uint8` (0-255); `uint16` (16-bit, scaled by 1/65535 so that it lands in
      [0, 1] exactly like `uint8` / 255); floating point (must already be in [0, 1] and finite; it is not rescaled);
      `bool` (0/1); other integer types holding values in 0-255 are read as 8-bit.
    - `str` / `os.PathLike`: a local image file, opened with Pillow (EXIF orientation applied).

    8-bit images are resized in 8 bit with Pillow (like the official pipeline) and then rescaled; 16-bit and float
    images are resized in float32 (Pillow mode `F`, per channel). `do_rescale` applies to 8-bit data only.

    Segmentation maps (`segmentation_maps=`, returned as `labels`, float32 `(batch, height, width)` with values 0 and
    1) take the same forms as images, and a mask may be `None` for an authentic image (all zeros). They are binarised
    the official way: channels are reduced to RGB (alpha dropped, palette applied) and the mean over channels is
    compared with half the range: `> 127.5` for 8-bit masks, `> 32767.5` for 16-bit masks, `> 0.5` for float masks
    (which must be in [0, 1]); boolean masks are used as they are. An 8-bit mask that only holds 0 and 1 therefore
    becomes all zeros (as in the official code; a warning is logged): pass 0/1 label maps as `bool` or float. Masks
    are resized with nearest neighbour (Pillow) to the image's output size in resize mode and padded with 0 like the
    image in native mode. A mask must have the size of its image.

    Every input problem raises a `ValueError` naming the problem and the index of the offending image in the batch:
    empty batch, wrong number of channels (e.g. 2 or 5), non-finite values, float values outside [0, 1], images
    smaller than 32 x 32 pixels, a mask whose size differs from its image, different numbers of images and masks.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize images to `size` (resize mode) or keep their resolution (native mode).
        size (`dict[str, int]`, *optional*, defaults to `{"height": 512, "width": 512}`):
            Output size in resize mode.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
            Resampling filter for images (masks always use nearest neighbour).
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to multiply 8-bit images by `rescale_factor`.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Scale factor for 8-bit images.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise with `image_mean` and `image_std`.
        image_mean (`float` or `list[float]`, *optional*, defaults to ImageNet mean `[0.485, 0.456, 0.406]`):
            Mean per channel.
        image_std (`float` or `list[float]`, *optional*, defaults to ImageNet std `[0.229, 0.224, 0.225]`):
            Standard deviation per channel.
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert images to 3-channel RGB. With `False` the channels are kept as given (the model itself
            needs 3 channels; this exists for API compatibility).
        do_pad (`bool`, *optional*, defaults to `True`):
            Whether to pad bottom/right with zeros to a multiple of `size_divisor` and to the largest size of the
            batch (a no-op in resize mode with the default size).
        size_divisor (`int`, *optional*, defaults to 32):
            The multiple that padded heights and widths are rounded up to.
        pad_size (`dict[str, int]`, *optional*):
            A fixed padded size (height, width) instead of the largest size of the batch; it must be a multiple of
            `size_divisor` and at least as large as every image.
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

    def __init__(self, **kwargs: Unpack[SparseViTImageProcessorKwargs]):
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------------------------------
    # Public entry points
    # ------------------------------------------------------------------------------------------------------------
    def preprocess(
        self,
        images,
        segmentation_maps=None,
        **kwargs: Unpack[SparseViTImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Preprocess an image or a batch of images, and optionally their manipulation masks.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, path, or a list of them):
                The image(s) to preprocess (see the class docstring for the accepted forms).
            segmentation_maps (same forms as `images`, entries may be `None`, *optional*):
                Ground-truth manipulation masks, one per image; `None` means authentic (all zeros).
            kwargs:
                Any option of the class (`do_resize`, `size`, `do_pad`, `size_divisor`, `return_tensors`, ...)
                overriding the instance's value for this call.

        Returns:
            [`BatchFeature`] with `pixel_values` (float32 `(batch, 3, height, width)`) and, when
            `segmentation_maps` is given, `labels` (float32 `(batch, height, width)`, values 0/1). With
            `return_tensors=None` both are lists of NumPy arrays.
        """
        return super().preprocess(images, segmentation_maps, **kwargs)

    def process_image(self, image, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs) -> np.ndarray:
        """Convert one raw image to a channels-first array (`uint8`, or `float32` in [0, 1] for other inputs)."""
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        return self._image_to_array(image, 0, do_convert_rgb, input_data_format)

    # ------------------------------------------------------------------------------------------------------------
    # Validation of options
    # ------------------------------------------------------------------------------------------------------------
    def _validate_preprocess_kwargs(self, **kwargs):
        super()._validate_preprocess_kwargs(**kwargs)
        do_resize = kwargs.get("do_resize")
        size = kwargs.get("size")
        do_pad = kwargs.get("do_pad")
        size_divisor = kwargs.get("size_divisor")
        pad_size = kwargs.get("pad_size")
        if kwargs.get("do_center_crop"):
            raise ValueError("SparseViTImageProcessor does not center crop; set `do_center_crop=False`.")
        if size_divisor is not None and (
            isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor < 1
        ):
            raise ValueError(f"`size_divisor` must be a positive integer or None, got {size_divisor!r}.")
        if do_resize:
            if size is None or not size.height or not size.width:
                raise ValueError(
                    f"`size` must be a dictionary with 'height' and 'width' (the model input size), got {size}."
                )
            if size.height < MIN_IMAGE_SIZE or size.width < MIN_IMAGE_SIZE:
                raise ValueError(
                    f"`size` ({size.height}x{size.width}) is smaller than the minimum of "
                    f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels."
                )
            if do_pad and size_divisor and (size.height % size_divisor or size.width % size_divisor):
                raise ValueError(
                    f"`size` ({size.height}x{size.width}) must be a multiple of `size_divisor` ({size_divisor}) "
                    "when `do_pad=True`: padding a resized image would shift the mapping back to the original size."
                )
        if do_pad and pad_size is not None:
            if not pad_size.height or not pad_size.width:
                raise ValueError(f"`pad_size` must have 'height' and 'width', got {pad_size}.")
            if size_divisor and (pad_size.height % size_divisor or pad_size.width % size_divisor):
                raise ValueError(
                    f"`pad_size` ({pad_size.height}x{pad_size.width}) must be a multiple of `size_divisor` "
                    f"({size_divisor})."
                )

    # ------------------------------------------------------------------------------------------------------------
    # Orchestration
    # ------------------------------------------------------------------------------------------------------------
    def _preprocess_image_like_inputs(
        self,
        images,
        segmentation_maps=None,
        do_convert_rgb: bool = True,
        input_data_format=None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        do_convert_rgb = True if do_convert_rgb is None else do_convert_rgb
        image_list = self._flatten_batch(images, "image", allow_none=False)
        arrays = [
            self._image_to_array(image, index, do_convert_rgb, input_data_format)
            for index, image in enumerate(image_list)
        ]
        original_sizes = [array.shape[-2:] for array in arrays]

        masks = None
        if segmentation_maps is not None:
            mask_list = self._flatten_batch(segmentation_maps, "segmentation map", allow_none=True)
            if len(mask_list) != len(image_list):
                raise ValueError(
                    f"Got {len(image_list)} image(s) but {len(mask_list)} segmentation map(s); pass exactly one "
                    "segmentation map (or None for an authentic image) per image."
                )
            masks = []
            for index, (mask, image_size) in enumerate(zip(mask_list, original_sizes, strict=True)):
                if mask is None:
                    masks.append(np.zeros(image_size, dtype=bool))
                    continue
                binary = self._mask_to_binary(mask, index, input_data_format)
                if binary.shape != tuple(image_size):
                    raise ValueError(
                        f"Segmentation map {index} in the batch has size {binary.shape[0]}x{binary.shape[1]} "
                        f"(height x width) but its image has size {image_size[0]}x{image_size[1]}; a mask must have "
                        "the size of its image."
                    )
                masks.append(binary)

        data = dict(self._preprocess(arrays, return_tensors=None, **kwargs))
        if masks is not None:
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
        self,
        images: list[np.ndarray],
        do_resize: bool = True,
        size: SizeDict | None = None,
        resample=None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean=None,
        image_std=None,
        do_pad: bool = True,
        pad_size: SizeDict | None = None,
        size_divisor: int | None = None,
        data_format=None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Resize, rescale, normalise and pad already converted channels-first images."""
        processed = []
        for image in images:
            if do_resize:
                image = self.resize(image, size=size, resample=resample)
            if image.dtype == np.uint8:
                image = self.rescale(image, rescale_factor) if do_rescale else image.astype(np.float32)
            else:
                image = image.astype(np.float32, copy=False)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image)

        if do_pad:
            target = self._get_padded_size([image.shape[-2:] for image in processed], pad_size, size_divisor)
            processed = self.pad(processed, pad_size=target, fill_value=0)

        if data_format is not None and ChannelDimension(data_format) == ChannelDimension.LAST:
            processed = [np.moveaxis(image, 0, -1) for image in processed]
        processed = [np.ascontiguousarray(image, dtype=np.float32) for image in processed]

        if return_tensors is not None:
            processed = np.stack(processed, axis=0)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)

    def _preprocess_masks(
        self,
        masks: list[np.ndarray],
        do_resize: bool = True,
        size: SizeDict | None = None,
        do_pad: bool = True,
        pad_size: SizeDict | None = None,
        size_divisor: int | None = None,
        **kwargs,
    ) -> list[np.ndarray]:
        """Resize (nearest neighbour) and pad binary `(H, W)` masks; returns float32 0/1 arrays."""
        processed = []
        for mask in masks:
            mask = mask.astype(np.uint8)
            if do_resize and mask.shape != (size.height, size.width):
                pil_mask = Image.fromarray(mask)
                mask = np.asarray(pil_mask.resize((size.width, size.height), resample=PILImageResampling.NEAREST))
            processed.append(mask.astype(np.float32)[None])
        if do_pad:
            target = self._get_padded_size([mask.shape[-2:] for mask in processed], pad_size, size_divisor)
            processed = self.pad(processed, pad_size=target, fill_value=0)
        return [np.ascontiguousarray(mask[0]) for mask in processed]

    # ------------------------------------------------------------------------------------------------------------
    # Array operations (channels first)
    # ------------------------------------------------------------------------------------------------------------
    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """
        Resize a channels-first image to `(size.height, size.width)` with Pillow.

        `uint8` images are resized in 8 bit (3 channels as one RGB image, otherwise channel by channel); any other
        dtype is resized in float32 (Pillow mode `F`) channel by channel, without quantisation.
        """
        resample = PILImageResampling.BILINEAR if resample is None else resample
        if not isinstance(resample, int):
            raise ValueError(f"`resample` must be a PIL resampling filter, got {resample!r}.")
        height, width = size.height, size.width
        if image.shape[-2:] == (height, width):
            return image
        if image.dtype == np.uint8 and image.shape[0] == 3:
            pil_image = Image.fromarray(np.ascontiguousarray(np.moveaxis(image, 0, -1)))
            return np.moveaxis(np.asarray(pil_image.resize((width, height), resample=resample)), -1, 0)
        channels = []
        for channel in image:
            if channel.dtype == np.uint8:
                pil_channel = Image.fromarray(np.ascontiguousarray(channel))
            else:
                pil_channel = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))
            channels.append(np.asarray(pil_channel.resize((width, height), resample=resample)))
        return np.stack(channels, axis=0)

    def rescale(self, image: np.ndarray, scale: float, **kwargs) -> np.ndarray:
        """Multiply by `scale` and return float32."""
        return image.astype(np.float32) * np.float32(scale)

    def normalize(self, image: np.ndarray, mean, std, **kwargs) -> np.ndarray:
        """`(image - mean) / std` per channel (channels first), in float32."""
        num_channels = image.shape[0]
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.size == 1:
            mean = np.repeat(mean, num_channels)
        if std.size == 1:
            std = np.repeat(std, num_channels)
        if mean.size != num_channels or std.size != num_channels:
            raise ValueError(
                f"`image_mean` and `image_std` need one value per channel ({num_channels}), got {mean.size} and "
                f"{std.size}."
            )
        return (image.astype(np.float32) - mean[:, None, None]) / std[:, None, None]

    @staticmethod
    def _get_padded_size(sizes, pad_size: SizeDict | None, size_divisor: int | None) -> SizeDict:
        max_height = max(int(size[0]) for size in sizes)
        max_width = max(int(size[1]) for size in sizes)
        if pad_size is not None:
            for index, (height, width) in enumerate(sizes):
                if height > pad_size.height or width > pad_size.width:
                    raise ValueError(
                        f"Image {index} in the batch ({height}x{width} after resizing) is larger than `pad_size` "
                        f"({pad_size.height}x{pad_size.width})."
                    )
            return SizeDict(height=pad_size.height, width=pad_size.width)
        if size_divisor:
            max_height = math.ceil(max_height / size_divisor) * size_divisor
            max_width = math.ceil(max_width / size_divisor) * size_divisor
        return SizeDict(height=max_height, width=max_width)

    # ------------------------------------------------------------------------------------------------------------
    # Input conversion
    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _flatten_batch(inputs, kind: str, allow_none: bool) -> list:
        """Turn a single image, a list of images or a 4-D array/tensor into a flat list."""
        if inputs is None:
            raise ValueError(f"No {kind} given: the batch is empty.")
        if isinstance(inputs, (list, tuple)):
            items = list(inputs)
        elif _is_array_like(inputs) and inputs.ndim == 4:
            items = list(inputs)
        else:
            items = [inputs]
        if len(items) == 0:
            raise ValueError(f"Got an empty batch: at least one {kind} is required.")
        for index, item in enumerate(items):
            if item is None:
                if allow_none:
                    continue
                raise ValueError(f"{kind.capitalize()} {index} in the batch is None.")
            if not (isinstance(item, (Image.Image, str, os.PathLike)) or _is_array_like(item)):
                raise ValueError(
                    f"{kind.capitalize()} {index} in the batch has unsupported type {type(item).__name__}; expected a "
                    "PIL image, a NumPy array, a torch tensor or a path to a local file."
                )
        return items

    def _image_to_array(self, image, index: int, do_convert_rgb: bool, input_data_format) -> np.ndarray:
        """Convert one image to channels-first `uint8`, or `float32` in [0, 1] for 16-bit/float/bool inputs."""
        what = f"Image {index} in the batch"
        array, prefer_channels_first = _raw_array(image, what, is_mask=False)
        array = _to_hwc(array, what, input_data_format, prefer_channels_first, strict_channels=do_convert_rgb)
        array = _image_dtype_to_canonical(array, what)
        if do_convert_rgb:
            num_channels = array.shape[-1]
            if num_channels == 1:
                array = np.repeat(array, 3, axis=-1)
            elif num_channels == 4:
                array = array[..., :3]
            elif num_channels != 3:
                raise ValueError(
                    f"{what} has {num_channels} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels."
                )
        _check_min_size(array.shape[0], array.shape[1], what)
        return np.ascontiguousarray(np.moveaxis(array, -1, 0))

    def _mask_to_binary(self, mask, index: int, input_data_format=None) -> np.ndarray:
        """Binarise one mask the official way; returns a boolean `(H, W)` array."""
        what = f"Segmentation map {index} in the batch"
        array, prefer_channels_first = _raw_array(mask, what, is_mask=True)
        array = _to_hwc(array, what, input_data_format, prefer_channels_first, strict_channels=True)
        num_channels = array.shape[-1]
        if num_channels == 4:
            array = array[..., :3]
        elif num_channels not in (1, 3):
            raise ValueError(
                f"{what} has {num_channels} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels."
            )

        dtype = array.dtype
        if dtype == np.bool_:
            return array[..., 0] if array.shape[-1] == 1 else array.mean(axis=-1) > 0.5
        if np.issubdtype(dtype, np.floating):
            if not np.isfinite(array).all():
                raise ValueError(f"{what} contains non-finite values (NaN or inf).")
            low, high = float(array.min()), float(array.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"{what} is a float mask with values in [{low:g}, {high:g}]; float masks must be in [0, 1] "
                    "(pass 8-bit masks as uint8)."
                )
            return array.astype(np.float64).mean(axis=-1) > 0.5
        if dtype == np.uint16:
            return array.astype(np.float64).mean(axis=-1) > 32767.5
        if np.issubdtype(dtype, np.integer):
            if dtype != np.uint8:
                array = _integer_to_uint8(array, what)
            if array.max() == 1:
                # A 0/1 label map stored as an image: the official rule (> 127.5) would make it empty. The data
                # loaders read such masks the same way.
                return array.max(axis=-1) > 0
            return array.astype(np.float64).mean(axis=-1) > 127.5
        raise ValueError(f"{what} has unsupported dtype {dtype}.")

    # ------------------------------------------------------------------------------------------------------------
    # Post-processing
    # ------------------------------------------------------------------------------------------------------------
    def post_process_semantic_segmentation(
        self,
        outputs,
        target_sizes=None,
        threshold: float = 0.5,
        return_probabilities: bool = False,
        return_segmentation_scores: bool = False,
        do_resize: bool | None = None,
    ):
        r"""
        Turn SparseViT logits into per-pixel label maps (0 = authentic, 1 = manipulated).

        The logits `outputs.logits` have shape `(batch, 1, h, w)`, at 1/16 of the model input `(16h, 16w)`. They are
        upsampled bilinearly (`align_corners=False`) to the input size (the official pre-sigmoid output) and passed
        through a sigmoid, giving the probability that each pixel was manipulated. Then, for each image with a
        target size:

        - resize mode (`do_resize=True`, the processor's default): the probability map is resized bilinearly
          (`align_corners=False`) to the target size;
        - native mode (`do_resize=False`): the top-left target-size region is cropped, which exactly undoes the
          bottom/right padding of the preprocessing when the target size is the original image size.

        Args:
            outputs:
                Model output with a `logits` attribute (or key), or the logits tensor itself.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch, 2)`, *optional*):
                `(height, width)` of each original image. If unset, maps have the model input size.
            threshold (`float`, *optional*, defaults to 0.5):
                A pixel is labelled manipulated when its probability is strictly greater than this value; must be in
                [0, 1].
            return_probabilities (`bool`, *optional*, defaults to `False`):
                Also return the probabilities (see Returns).
            return_segmentation_scores (`bool`, *optional*, defaults to `False`):
                The transformers-wide name of `return_probabilities`; either flag gives the same output.
            do_resize (`bool`, *optional*):
                Whether the inputs were resized by the preprocessing (resize vs native mode). Defaults to
                `self.do_resize`; pass it when the preprocessing call overrode `do_resize`.

        Returns:
            By default, a list (one per image) of `torch.LongTensor` label maps of shape `(height, width)`.
            With `return_probabilities=True` or `return_segmentation_scores=True`, a list of
            [`~image_processing_outputs.SemanticSegmentationPostProcessorOutput`] (dictionaries with attribute access)
            with the fields:

            - `segmentation`: the `torch.LongTensor` label map `(height, width)` as above;
            - `probabilities`: float32 `(height, width)`, probability that each pixel was manipulated;
            - `segmentation_scores`: float32 `(2, height, width)`, the per-class probabilities
              `[1 - p, p]` in the order of `id2label` `{0: "authentic", 1: "manipulated"}`.
        """
        if not is_torch_available():
            raise ImportError("`post_process_semantic_segmentation` requires PyTorch.")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be a number in [0, 1], got {threshold!r}.")
        do_resize = self.do_resize if do_resize is None else do_resize

        logits = _get_logits(outputs)
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"Expected logits of shape (batch_size, 1, height, width), got {tuple(logits.shape)}.")
        batch_size, _, logits_height, logits_width = logits.shape
        input_height, input_width = logits_height * LOGITS_STRIDE, logits_width * LOGITS_STRIDE
        logits = logits.detach().float()
        upsampled = F.interpolate(logits, size=(input_height, input_width), mode="bilinear", align_corners=False)
        probabilities = upsampled.sigmoid()[:, 0]

        if target_sizes is not None:
            if isinstance(target_sizes, torch.Tensor):
                target_sizes = target_sizes.tolist()
            if len(target_sizes) != batch_size:
                raise ValueError(
                    f"Got {len(target_sizes)} target sizes for a batch of {batch_size}; pass one (height, width) per "
                    "image."
                )
        maps = []
        for index in range(batch_size):
            probability = probabilities[index]
            if target_sizes is not None:
                target_height, target_width = _parse_target_size(target_sizes[index], index)
                if do_resize:
                    if (target_height, target_width) != (input_height, input_width):
                        probability = F.interpolate(
                            probability[None, None],
                            size=(target_height, target_width),
                            mode="bilinear",
                            align_corners=False,
                        )[0, 0]
                else:
                    if target_height > input_height or target_width > input_width:
                        raise ValueError(
                            f"Target size {target_height}x{target_width} of image {index} is larger than the model "
                            f"input {input_height}x{input_width}; in native mode (do_resize=False) the target size "
                            "must be the original image size, which the padded input contains."
                        )
                    probability = probability[:target_height, :target_width]
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
            outputs,
            target_sizes=target_sizes,
            threshold=mask_threshold,
            return_probabilities=True,
            do_resize=do_resize,
        )
        return [
            {
                "segmentation": result["segmentation"],
                "segments_info": _segments_info(result["segmentation"], result["probabilities"]),
            }
            for result in results
        ]


# ----------------------------------------------------------------------------------------------------------------
# Helpers (module level so that they are easy to test and need no instance)
# ----------------------------------------------------------------------------------------------------------------
def _is_torch_tensor(value) -> bool:
    return is_torch_available() and isinstance(value, torch.Tensor)


def _is_array_like(value) -> bool:
    return isinstance(value, np.ndarray) or _is_torch_tensor(value)


def _get_logits(outputs):
    if _is_torch_tensor(outputs):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, dict):
        logits = outputs.get("logits")
    if logits is None:
        raise ValueError("`outputs` must be a model output with `logits`, a dict with 'logits' or a tensor.")
    return logits


def _parse_target_size(target_size, index: int) -> tuple[int, int]:
    try:
        values = [int(value) for value in target_size]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or values[0] < 1 or values[1] < 1:
        raise ValueError(f"Target size {index} must be (height, width) with positive integers, got {target_size!r}.")
    return values[0], values[1]


def _check_min_size(height: int, width: int, what: str) -> None:
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise ValueError(
            f"{what} is {height}x{width} pixels (height x width); the minimum size is "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}."
        )


def _open_local_file(path, what: str) -> Image.Image:
    path = os.fspath(path)
    if "://" in path:
        raise ValueError(f"{what} is a URL ({path}); only local files are opened. Load the image first.")
    try:
        with Image.open(path) as image:
            image.load()
            transposed = ImageOps.exif_transpose(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"{what}: cannot open {path!r} as an image ({error}).") from error
    return transposed


def _pil_to_array(image: Image.Image, what: str, is_mask: bool) -> np.ndarray:
    """`(H, W)` or `(H, W, C)` array of a PIL image with alpha dropped and palettes applied."""
    mode = image.mode
    if mode == "1":
        return np.array(image) if is_mask else np.array(image.convert("L"))
    if mode in ("L", "RGB", "F"):
        return np.array(image)
    if mode in ("LA", "La"):
        return np.array(image.convert("LA"))[..., 0]
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.array(image.convert("RGBA"))[..., :3]
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.array(image.convert("RGBA" if has_alpha else "RGB"))[..., :3]
    if mode.startswith("I;16"):
        return np.array(image).astype(np.uint16)
    if mode == "I":
        array = np.array(image)
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ValueError(
                f"{what} is a 32-bit integer PIL image (mode 'I') with values in [{low}, {high}]; only 16-bit data "
                "(0-65535) is supported."
            )
        return array.astype(np.uint16)
    try:
        return np.array(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise ValueError(f"{what} has PIL mode {mode!r}, which cannot be converted to RGB.") from error


def _raw_array(image, what: str, is_mask: bool) -> tuple[np.ndarray, bool]:
    """Return a NumPy array of the input and whether channels-first is preferred when the layout is ambiguous."""
    if isinstance(image, (str, os.PathLike)):
        image = _open_local_file(image, what)
    if isinstance(image, Image.Image):
        return _pil_to_array(image, what, is_mask), False
    if _is_torch_tensor(image):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        return tensor.numpy(), True
    if isinstance(image, np.ndarray):
        return image, False
    raise ValueError(
        f"{what} has unsupported type {type(image).__name__}; expected a PIL image, a NumPy array, a torch tensor or "
        "a path to a local file."
    )


def _to_hwc(array: np.ndarray, what: str, input_data_format, prefer_channels_first: bool, strict_channels: bool):
    """Return an `(H, W, C)` view of a 2-D or 3-D array."""
    if array.ndim == 2:
        return array[..., None]
    if array.ndim != 3:
        raise ValueError(
            f"{what} has shape {tuple(array.shape)}; expected (height, width), (height, width, channels) or "
            "(channels, height, width). Pass a batch as a list."
        )
    if input_data_format is not None:
        channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
    else:
        first_ok = array.shape[0] in _VALID_CHANNEL_COUNTS
        last_ok = array.shape[-1] in _VALID_CHANNEL_COUNTS
        if first_ok and last_ok:
            channels_first = prefer_channels_first
        elif first_ok or last_ok:
            channels_first = first_ok
        else:
            num_channels = min(array.shape[0], array.shape[-1])
            raise ValueError(
                f"{what} has {num_channels} channels (shape {tuple(array.shape)}); expected 1 (grayscale), 3 (RGB) "
                "or 4 (RGBA) channels, first or last. A batch of grayscale images must be passed as a list."
            )
    array = np.moveaxis(array, 0, -1) if channels_first else array
    if strict_channels and array.shape[-1] not in _VALID_CHANNEL_COUNTS:
        raise ValueError(
            f"{what} has {array.shape[-1]} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels."
        )
    return array


def _integer_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"{what} has integer dtype {array.dtype} with values in [{low}, {high}]; pass 8-bit data as uint8 "
            "(0-255) and 16-bit data as uint16 (0-65535)."
        )
    return array.astype(np.uint8)


def _image_dtype_to_canonical(array: np.ndarray, what: str) -> np.ndarray:
    """`uint8` stays `uint8`; 16-bit, float and bool become float32 in [0, 1]."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.float32)
    if dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(dtype, np.integer):
        return _integer_to_uint8(array, what)
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{what} contains non-finite pixel values (NaN or inf).")
        low, high = float(array.min()), float(array.max())
        if low < -_FLOAT_RANGE_TOLERANCE or high > 1.0 + _FLOAT_RANGE_TOLERANCE:
            raise ValueError(
                f"{what} is a float image with values in [{low:g}, {high:g}]; float images must be in [0, 1] "
                "(pass 0-255 data as uint8)."
            )
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"{what} has unsupported dtype {dtype}.")


def _segments_info(segmentation, probability) -> list[dict]:
    """One entry per label present in a 0/1 label map: its score is the mean probability of that label inside it."""
    infos = []
    for label_id, label_probability in ((0, 1.0 - probability), (1, probability)):
        region = segmentation == label_id
        if bool(region.any()):
            score = float(label_probability[region].double().mean())
            infos.append({"id": label_id, "label_id": label_id, "was_fused": False, "score": score})
    return infos


__all__ = ["SparseViTImageProcessor"]
