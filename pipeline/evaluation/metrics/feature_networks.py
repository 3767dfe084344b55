"""The metric networks, loaded only from local files in the weights folder (``MTVCRAFT_WEIGHTS``).

Files expected in the weights folder (names as published, for the README):

- ``pt_inception-2015-12-05-6726825d.pth``: the FID Inception-V3 (TensorFlow
  2015-12-05 graph ported to PyTorch, pytorch-fid's release file) for FID (Eq. 17).
- ``i3d_torchscript.pt``: StyleGAN-V's TorchScript I3D (Kinetics-400) for FVD
  and FID-VID (Eq. 18-19).
- ``alexnet-owt-7be5be79.pth``: torchvision's ImageNet AlexNet, the LPIPS
  backbone (Eq. 15); the LPIPS v0.1 linear heads ship inside the ``lpips`` wheel.

Nothing is ever downloaded and no other network is substituted: a missing file
raises ``MissingWeights`` naming the file, which ``evaluate_videos`` reports as
"not computed: missing <file> ...".
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from pipeline.core.config import ENV_WEIGHTS, weights_folder

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
I3D_WEIGHTS_FILE = "i3d_torchscript.pt"
ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
WEIGHT_FILES = {"fid": INCEPTION_WEIGHTS_FILE, "fvd": I3D_WEIGHTS_FILE, "fid_vid": I3D_WEIGHTS_FILE,
                "lpips": ALEXNET_WEIGHTS_FILE}

INCEPTION_FEATURE = "2048"  # torch-fidelity's name for the 2048-d pool3 features used by FID


class MissingWeights(FileNotFoundError):
    """A metric's weight file is not in the weights folder; the message names the file."""


def weight_file(weights_dir: str | os.PathLike | None, file_name: str) -> Path:
    """Path of ``file_name`` in the weights folder; ``MissingWeights`` naming the file if absent."""
    folder = weights_folder(weights_dir)
    if folder is None:
        raise MissingWeights(f"missing {file_name}: no weights folder given ({ENV_WEIGHTS} is not set)")
    path = folder / file_name
    if not path.is_file():
        raise MissingWeights(f"missing {file_name} in the weights folder {folder} ({ENV_WEIGHTS})")
    return path


def load_inception(weights_dir: str | os.PathLike | None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The FID Inception-V3 returning 2048-d pool features, from ``pt_inception-2015-12-05-6726825d.pth``.

    The network definition is torch-fidelity's ``FeatureExtractorInceptionV3``
    (the one torchmetrics' FID wraps): it takes a local weight path, and its key
    names match pytorch-fid's file exactly. It takes uint8 (N, 3, H, W), resizes
    to 299 with a TensorFlow-1 compatible bilinear resize and scales to [-1, 1];
    pytorch-fid (DisCo's FID) resizes with torch's bilinear instead, which
    shifts FID slightly when frames are not 299 x 299.

    The file is first read with ``weights_only=True`` (a plain state dict or an
    error), because torch-fidelity itself loads it with ``weights_only=False``.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = weight_file(weights_dir, INCEPTION_WEIGHTS_FILE)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ValueError(f"{path} is not the FID Inception-V3 state dict (pytorch-fid / torch-fidelity key names)")
    network = FeatureExtractorInceptionV3("inception-v3-compat", [INCEPTION_FEATURE], feature_extractor_weights_path=str(path))
    return network.to(device).eval()


def load_i3d(weights_dir: str | os.PathLike | None, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """StyleGAN-V's TorchScript I3D from ``i3d_torchscript.pt``.

    Called as ``net(x, rescale=True, resize=True, return_features=True)`` on
    float (B, 3, T, H, W) clips on 0-255, it scales to [-1, 1], resizes to 224 x 224
    and returns the 400-d Kinetics pre-softmax features (see
    ``distribution_metrics.i3d_segment_features``). TorchScript archives hold code,
    so load only files from a trusted source.
    """
    path = weight_file(weights_dir, I3D_WEIGHTS_FILE)
    return torch.jit.load(str(path), map_location=device).eval()


def load_lpips_alexnet(weights_dir: str | os.PathLike | None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """LPIPS v0.1 on AlexNet (Eq. 15): the ``lpips`` package's network and shipped linear heads,
    with the AlexNet backbone read from the local torchvision file ``alexnet-owt-7be5be79.pth``.

    The network is built with its backbone random (``pnet_rand=True``, so
    torchvision downloads nothing), then the backbone's convolution weights are
    set from the file's ``features.*`` entries (the classifier, unused by LPIPS,
    may be absent). Takes (N, 3, H, W) in [-1, 1].
    """
    import lpips

    path = weight_file(weights_dir, ALEXNET_WEIGHTS_FILE)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    with warnings.catch_warnings():  # lpips 0.1.4 passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    backbone = network.net
    # lpips keeps torchvision's feature indices inside its slices: "slice2.3.weight" is "features.3.weight".
    wanted = {key: key.split(".", 1)[1] for key in backbone.state_dict()}
    missing = sorted(f"features.{name}" for name in wanted.values() if name not in features)
    if missing:
        raise ValueError(f"{path} lacks {missing}: expected torchvision's AlexNet state dict")
    backbone.load_state_dict({key: features[name] for key, name in wanted.items()}, strict=True)
    return network.to(device).eval()
