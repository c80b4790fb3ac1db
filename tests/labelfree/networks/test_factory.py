"""networks: the original configurations and the self-supervised Swin-ViT weight loader."""

import re

import pytest
import torch
from monai.networks.nets import SwinUNETR, UNet
from monai.utils import optional_import

from labelfree.networks import PretrainedWeightsError, build_model, load_swinvit_weights


def test_unet_is_the_original_configuration():
    model = build_model("unet", in_channels=1, out_channels=3, roi_size=(32, 32, 32))
    assert isinstance(model, UNet)
    assert tuple(model.channels) == (16, 32, 64, 128, 256)
    assert tuple(model.strides) == (2, 2, 2, 2) and model.num_res_units == 2
    # 4.8 M parameters, the figure of the original UNet (REFERENCE 4b).
    assert 4.7e6 < sum(p.numel() for p in model.parameters()) < 4.9e6
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 32, 32, 32))
    assert out.shape == (1, 3, 32, 32, 32)


# MONAI's SwinUNETR needs einops (listed in requirements.txt); without it build_model
# refuses Swin models with a clear message instead of failing at the first forward pass.
needs_einops = pytest.mark.skipif(not optional_import("einops")[1], reason="einops is not installed")


@needs_einops
@pytest.mark.parametrize("swin_type,feature_size", [("tiny", 12), ("small", 24), ("base", 48)])
def test_swin_feature_sizes(swin_type, feature_size):
    model = build_model("swin_unetrv2", roi_size=(64, 64, 64), swin_type=swin_type)
    assert isinstance(model, SwinUNETR)
    assert model.swinViT.embed_dim == feature_size
    assert hasattr(model.swinViT, "layers1c")  # v2: residual conv block before each stage


@pytest.mark.skipif(optional_import("einops")[1], reason="einops is installed")
def test_swin_without_einops_fails_clearly():
    with pytest.raises(ImportError, match="einops"):
        build_model("swin_unetrv2", roi_size=(64, 64, 64))


@needs_einops
def test_swin_forward_shape():
    model = build_model("swin_unetrv2", in_channels=1, out_channels=3, roi_size=(64, 64, 64), swin_type="tiny")
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 3, 64, 64, 64)


def test_bad_names_and_patch_sizes_are_rejected():
    with pytest.raises(ValueError, match="unknown model name"):
        build_model("unetr")
    with pytest.raises(ValueError, match="swin_type"):
        build_model("swin_unetrv2", swin_type="huge")
    with pytest.raises(ValueError, match="divisible by 16"):
        build_model("unet", roi_size=(96, 96, 40))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("swin_unetrv2", roi_size=(96, 96, 80))
    with pytest.raises(ValueError, match="at least 64"):
        build_model("swin_unetrv2", roi_size=(64, 64, 32))


def tiny_swin_v2():
    """Swin-UNETR v2 tiny as build_model makes it (built directly: loading needs no einops)."""
    return SwinUNETR(in_channels=1, out_channels=3, feature_size=12, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                     window_size=7, use_v2=True)


def ssl_weights_file(path, feature_size=12, seed=0):
    """A file in the layout of MONAI's model_swinvit.pt: {"state_dict": {"module.<encoder key>": ...}}.

    The self-supervised encoder is the v1 Swin-ViT (no layers*c blocks) whose MLP layers are
    named fc1/fc2; a head tensor that no encoder has is added as the real file's
    self-supervised heads would be.
    """
    torch.manual_seed(seed)
    encoder = SwinUNETR(in_channels=1, out_channels=3, feature_size=feature_size, use_v2=False).swinViT
    weights = {
        "module." + k.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2."): v.clone()
        for k, v in encoder.state_dict().items()
    }
    weights["module.rotation_head.weight"] = torch.randn(4, 8)
    torch.save({"state_dict": weights, "epoch": 100}, path)
    return weights


def test_pretrained_weights_load_into_the_encoder(tmp_path):
    path = tmp_path / "model_swinvit.pt"
    weights = ssl_weights_file(path)
    model = tiny_swin_v2()
    decoder_before = model.decoder1.conv_block.conv1.conv.weight.clone()
    v2_block_before = model.swinViT.layers1c[0].layer.conv1.conv.weight.clone()

    report = load_swinvit_weights(model, path)

    encoder = model.swinViT.state_dict()
    for key, value in weights.items():
        name = key[len("module."):].replace("mlp.fc1.", "mlp.linear1.").replace("mlp.fc2.", "mlp.linear2.")
        if name in encoder:
            assert torch.equal(encoder[name], value), name
    assert report["loaded"] == len(weights) - 1 and report["ignored"] == 1
    assert torch.equal(model.decoder1.conv_block.conv1.conv.weight, decoder_before)
    assert torch.equal(model.swinViT.layers1c[0].layer.conv1.conv.weight, v2_block_before)


def test_test_file_has_the_layout_monai_expects(tmp_path):
    # MONAI's own loader reads the published file by these exact keys: if it accepts our
    # stand-in, the stand-in has the published layout.
    path = tmp_path / "model_swinvit.pt"
    weights = ssl_weights_file(path)
    model = SwinUNETR(in_channels=1, out_channels=3, feature_size=12, use_v2=True)
    model.load_from(torch.load(path, weights_only=True))
    assert torch.equal(model.swinViT.patch_embed.proj.weight, weights["module.patch_embed.proj.weight"])
    ours = tiny_swin_v2()
    load_swinvit_weights(ours, path)
    # Our loader puts every pretrained tensor where MONAI's own loader puts it.
    v2_only = re.compile(r"^layers\dc\.")
    for key, value in model.swinViT.state_dict().items():
        if not v2_only.match(key):
            assert torch.equal(ours.swinViT.state_dict()[key], value), key


def test_pretrained_weights_of_another_size_are_rejected(tmp_path):
    path = tmp_path / "model_swinvit.pt"
    ssl_weights_file(path, feature_size=48)
    model = tiny_swin_v2()
    with pytest.raises(PretrainedWeightsError, match=r"model_swinvit\.pt.*other shapes"):
        load_swinvit_weights(model, path)


def test_pretrained_weights_missing_tensors_or_file(tmp_path):
    model = tiny_swin_v2()
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_swinvit_weights(model, tmp_path / "absent.pt")
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict": {"module.patch_embed.proj.weight": torch.zeros(12, 1, 2, 2, 2)}}, partial)
    with pytest.raises(PretrainedWeightsError, match="missing"):
        load_swinvit_weights(model, partial)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="garbage.pt"):
        load_swinvit_weights(model, garbage)
