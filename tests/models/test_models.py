"""Every registered network: output shapes at two sizes, finiteness, heads, arguments, overfitting."""

import pytest
import torch

from ssinfnet.training.losses import structure_loss
from ssinfnet.models.infnet import InfNet, load_backbone_weights
from ssinfnet.models.multi import MultiInfNet
from ssinfnet.models.registry import build_model, list_models

TINY_BACKBONE = {"backbone": "resnet18",
                 "backbone_kwargs": {"channels": (8, 16, 32, 64), "stem_width": 8}}
TINY_INFNET = {**TINY_BACKBONE, "channels": 8, "edge_channels": 8, "ra_widths": (16, 8, 8)}
INFNET_KEYS = ["global", "lateral5", "lateral4", "lateral3", "edge"]

# name, tiny kwargs, input channels, {output key: channels} for the seg head
CASES = [
    ("infnet", TINY_INFNET, 1, {"global": 1, "lateral5": 1, "lateral4": 1, "lateral3": 1, "edge": 1}),
    ("infnet_multi", TINY_INFNET, 2, {"global": 3, "lateral5": 3, "lateral4": 3, "lateral3": 3, "edge": 1}),
    ("unet", {"base_width": 4, "depth": 3}, 1, {"out": 1}),
    ("unet_multi", {"base_width": 4, "depth": 3}, 2, {"out": 3}),
    ("fcn8s", {"fc_width": 16}, 1, {"out": 3}),
]


def test_cases_cover_registry():
    assert sorted([c[0] for c in CASES] + ["coach"]) == list_models()


@pytest.mark.parametrize("size", [64, 96])
@pytest.mark.parametrize("name,kwargs,cin,outs", CASES, ids=[c[0] for c in CASES])
def test_seg_output_shapes(name, kwargs, cin, outs, size):
    torch.manual_seed(0)
    model = build_model(name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(2, cin, size, size))
    assert list(out) == list(outs)
    for key, c in outs.items():
        assert out[key].shape == (2, c, size, size)
        assert torch.isfinite(out[key]).all()
    assert model.prediction_key in out


@pytest.mark.parametrize("name,kwargs,cin,outs", CASES, ids=[c[0] for c in CASES])
def test_inpaint_head_reconstructs_input_channels(name, kwargs, cin, outs):
    model = build_model(name, head="inpaint", **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, cin, 64, 80))
    assert list(out) == list(outs)
    for value in out.values():
        assert value.shape == (1, cin, 64, 80)
    # inpainting heads are linear 1x1 layers
    for head in model.head_names:
        assert getattr(model, head).kernel_size == (1, 1)


def test_real_res2net50_infnet_builds_and_runs():
    model = InfNet().eval()  # default Res2Net-50 backbone, random weights
    assert model.backbone.feature_info.channels() == [256, 512, 1024, 2048]
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64))
    assert list(out) == INFNET_KEYS
    assert all(v.shape == (1, 1, 64, 64) and torch.isfinite(v).all() for v in out.values())


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    model = InfNet(**TINY_INFNET).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    for key in INFNET_KEYS:
        torch.testing.assert_close(out[key], ref[key], atol=1e-4, rtol=1e-4)


def test_reverse_attention_maps():
    single = InfNet(**TINY_INFNET)
    p = torch.tensor([[[[0.0, 2.0]]]])
    torch.testing.assert_close(single._reverse(p), 1 - torch.sigmoid(p))
    multi = MultiInfNet(**TINY_INFNET)
    logits = torch.tensor([0.0, 0.0, torch.log(torch.tensor(2.0))]).view(1, 3, 1, 1)
    # background probability 1 / (1 + 1 + 2)
    torch.testing.assert_close(multi._reverse(logits), torch.full((1, 1, 1, 1), 0.25))


def test_multi_reinjects_prior_at_every_ra_stage():
    model = MultiInfNet(**TINY_INFNET).eval()
    for ra, width in zip((model.ra5, model.ra4, model.ra3), (16, 8, 8)):
        assert ra.convs[0][0].in_channels == width + 8 + 1  # features + edge guidance + prior
    # the prior changes the output even at the shallowest head
    x = torch.randn(1, 2, 64, 64)
    y = x.clone()
    y[:, 1] = torch.rand(1, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(x)["lateral3"], model(y)["lateral3"])


@pytest.mark.parametrize("factory,kwargs,match", [
    (InfNet, {"head": "classify"}, "head"),
    (InfNet, {"in_chans": 0}, "in_chans"),
    (InfNet, {"ra_mode": "tanh"}, "ra_mode"),
    (InfNet, {"ra_widths": (8, 8)}, "ra_widths"),
    (InfNet, {"ra_mode": "softmax", "out_chans": 1}, "softmax"),
    (MultiInfNet, {"in_chans": 1}, "in_chans"),
    (MultiInfNet, {"guide_prior": 0}, "guide_prior"),
])
def test_bad_arguments_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**{**TINY_INFNET, **kwargs})


def test_bad_arguments_other_models():
    with pytest.raises(ValueError, match="depth"):
        build_model("unet", depth=0)
    with pytest.raises(ValueError, match="head"):
        build_model("unet", head="x")
    with pytest.raises(ValueError, match="fc_width"):
        build_model("fcn8s", fc_width=0)
    with pytest.raises(ValueError, match="did you mean infnet"):
        build_model("infnett")


@pytest.mark.parametrize("name,kwargs,cin,outs", CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_wrong_input_channels_raise(name, kwargs, cin, outs):
    model = build_model(name, **kwargs)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(1, cin + 1, 64, 64))


def test_backbone_weights_file_loaded_and_first_conv_adapted(tmp_path):
    torch.manual_seed(0)
    rgb = InfNet(in_chans=3, **TINY_INFNET)
    path = tmp_path / "backbone.pth"
    state = {"state_dict": {**rgb.backbone.state_dict(), "fc.weight": torch.zeros(10, 64)}}
    torch.save(state, path)
    gray = InfNet(in_chans=1, pretrained_path=str(path), **TINY_INFNET)
    torch.testing.assert_close(gray.backbone.conv1.weight, rgb.backbone.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(gray.backbone.layer4[1].conv2.weight, rgb.backbone.layer4[1].conv2.weight)
    two = InfNet(in_chans=2, **TINY_INFNET)
    assert load_backbone_weights(two.backbone, str(path), 2) == []


def test_backbone_weights_file_without_match_raises(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="pretrained_path"):
        InfNet(pretrained_path=str(path), **TINY_INFNET)


def test_fcn8s_loads_local_vgg_weights(tmp_path):
    torch.manual_seed(0)
    w0, w2 = torch.randn(64, 3, 3, 3), torch.randn(64, 64, 3, 3)
    path = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": w0, "features.0.bias": torch.zeros(64), "features.2.weight": w2}, path)
    model = build_model("fcn8s", fc_width=16, pretrained_path=str(path))
    torch.testing.assert_close(model.encoder[0].weight, w0.sum(1, keepdim=True))
    torch.testing.assert_close(model.encoder[2].weight, w2)


def test_tiny_unet_overfits_a_fixed_batch():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16, generator=gen)
    mask = (torch.rand(2, 1, 16, 16, generator=gen) > 0.7).float()
    model = build_model("unet", base_width=8, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = structure_loss(model(x)["out"], mask)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


def test_fcn8s_encoder_is_vgg16():
    model = build_model("fcn8s", in_chans=3, fc_width=16)
    # VGG-16's 13 convolutions hold 14,714,688 parameters
    assert sum(p.numel() for p in model.encoder.parameters()) == 14_714_688
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.encoder) == 5


@pytest.mark.parametrize("head", ["seg", "inpaint"])
def test_every_infnet_parameter_gets_a_gradient(head):
    # unused parameters would break DistributedDataParallel and mean dead branches
    from ssinfnet.training.losses import infnet_loss, inpainting_loss

    torch.manual_seed(0)
    model = MultiInfNet(head=head, **TINY_INFNET) if head == "inpaint" else InfNet(**TINY_INFNET)
    x = torch.randn(2, model.in_chans, 64, 64)
    out = model(x)
    if head == "seg":
        target = (torch.rand(2, 1, 64, 64) > 0.7).float()
        loss = infnet_loss(out, target, target)
    else:
        loss = inpainting_loss(out, x, torch.ones(2, 1, 64, 64) * 0.5)
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # timm zero-initialises each residual block's last BN scale, which zeroes the gradients of
    # the convolutions inside the blocks at step 0; every decoder and head weight must move
    dead = [n for n, p in model.named_parameters()
            if not n.startswith("backbone.") and not p.grad.abs().sum() > 0]
    assert dead == []


def test_eval_mode_restores_the_previous_mode_even_on_error():
    from ssinfnet.models import eval_mode

    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    for start in (True, False):
        net.train(start)
        with eval_mode(net) as inside:
            assert inside is net and not net.training
        assert net.training is start
    net.train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training
