"""Input checks shared by every module: errors that say what was given and what was expected."""

from __future__ import annotations

import math

import torch


def check_float_tensor(x: object, name: str) -> torch.Tensor:
    """Raise TypeError unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"expected {name} to be a floating-point tensor, got dtype {x.dtype}; "
            f"convert it first, e.g. {name}.float() (images: {name}.float() / 255)"
        )
    return x


def check_tokens(x: object, dim: int, name: str = "x") -> torch.Tensor:
    """Check a token tensor of shape ``(B, N, dim)``."""
    x = check_float_tensor(x, name)
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"expected {name} of shape (B, N, {dim}), got {tuple(x.shape)}")
    return x


def check_feature_map(x: object, channels: int, name: str = "x") -> torch.Tensor:
    """Check a feature map of shape ``(B, channels, H, W)``."""
    x = check_float_tensor(x, name)
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected {name} of shape (B, {channels}, H, W), got {tuple(x.shape)}")
    return x


def check_image_tensor(x: object, name: str = "images", channels: int = 3) -> torch.Tensor:
    """Check shape ``(B, 3, H, W)`` and a float dtype other than float64; reads no values (no host sync)."""
    x = check_feature_map(x, channels, name)
    if x.dtype == torch.float64:
        raise TypeError(
            f"expected {name} as float32 (or float16 / bfloat16), got float64; the models' weights are float32: "
            f"pass {name}.float()"
        )
    return x


def check_images(x: object, name: str = "images", channels: int = 3) -> torch.Tensor:
    """Check a float image batch ``(B, 3, H, W)`` with finite values in [0, 1], not float64."""
    x = check_image_tensor(x, name, channels)
    if not x.numel() or torch.compiler.is_compiling():
        return x
    low, high = torch.stack(torch.aminmax(x.detach())).tolist()  # one pass, one sync; NaN propagates
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"expected {name} without NaN values, got {int(x.isnan().sum())} NaN values; fix the input")
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"expected {name} with values in [0, 1], got range [{low:.3g}, {high:.3g}]; "
            "the models normalise inside, so pass raw images scaled to [0, 1]"
        )
    return x


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {value}")
    return value


def check_divisible(dim: int, heads: int, dim_name: str = "dim") -> None:
    """Raise ValueError unless ``heads`` divides ``dim``."""
    check_positive_int(heads, "heads")
    if dim % heads:
        raise ValueError(f"expected heads to divide {dim_name}={dim}, got heads={heads}")


def check_choice(value: object, choices, name: str):
    """``value`` if it is one of ``choices``; else a ValueError that lists them as given.

    The one "expected one of" error of the package: ``check_choice("l2", NORMS, "norm")`` raises
    ``expected norm to be one of ('double', 'softmax'), got 'l2'``.
    """
    try:
        known = value in choices
    except TypeError:  # an unhashable value is never a key
        known = False
    if not known:
        raise ValueError(f"expected {name} to be one of {choices}, got {value!r}")
    return value


def check_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """Raise unless ``value`` is a finite number (an int if ``integer``) in the given range.

    ``check_number(lr, "lr", low=0, low_open=True)`` accepts 0 < lr < inf; the message states
    the range: ``expected lr to be a finite number > 0, got nan``.
    """
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    expected = f"expected {name} to be {kind}" + (" " + " and ".join(bounds) if bounds else "")
    numeric = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise TypeError(f"{expected}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{expected}, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{expected}, got {value}")
    return value


def check_device(device: str | torch.device) -> torch.device:
    """A ``torch.device`` that this machine has; "auto" picks CUDA when a GPU is visible."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"expected device to be cpu, cuda, cuda:N, mps or auto, got {device!r}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but this machine has no Apple GPU; use cpu or auto")
    return device
