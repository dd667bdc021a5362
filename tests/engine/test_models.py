"""Tests for labreport.engine.networks: paper parameter counts, shapes, options, errors."""

import math

import pytest
import torch
from torch import nn

from labreport.errors import ModelError
from labreport.models import MODELS as MODELS
from labreport.models import ModelInfo
from labreport.models import model_info as get_model_info
from labreport.engine.networks import build_model, builder, count_parameters

CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"]
FORWARD_MODELS = [n for n in MODELS if n != "resnet1202"]  # resnet1202 is too slow on CPU


def _batch(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 3, 32, 32)


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


# ---------------------------------------------------------------- registry


def test_registry_entries_are_consistent():
    for name, info in MODELS.items():
        assert isinstance(info, ModelInfo) and info.name == name
        assert info.family in {"cifar-resnet", "plain", "torchvision", "baseline"}
        assert info.supports <= {"norm", "dropout", "init"}
        assert "\n" not in info.description and info.description
    assert get_model_info("resnet56").paper_error == 6.97
    assert get_model_info("plain56").paper_params_m is None


@pytest.mark.parametrize("name, paper", [
    ("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66), ("resnet56", 0.85)])
def test_small_resnet_parameter_counts_match_paper(name, paper):
    info = get_model_info(name)
    assert info.paper_params_m == paper
    assert info.depth == int(name[6:])
    assert round(count_parameters(build_model(name)) / 1e6, 2) == paper


@pytest.mark.parametrize("name, paper", [("resnet110", 1.7), ("resnet1202", 19.4)])
def test_large_resnet_parameter_counts_match_paper(name, paper):
    assert get_model_info(name).paper_params_m == paper
    assert round(count_parameters(build_model(name)) / 1e6, 1) == paper


def test_other_parameter_counts():
    assert count_parameters(build_model("resnet18")) == 11_181_642
    assert count_parameters(build_model("cifarnet", norm="none")) == 2_168_362
    assert count_parameters(build_model("resnet20")) == 269_722


def test_count_parameters_ignores_frozen():
    model = build_model("resnet20")
    total = count_parameters(model)
    model.fc.weight.requires_grad_(False)
    assert count_parameters(model) == total - 64 * 10


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_output_shape(name):
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(_batch()).shape == (2, 10)


def test_num_classes():
    for name in ("resnet20", "resnet18", "cifarnet"):
        with torch.no_grad():
            assert build_model(name, num_classes=7).eval()(_batch()).shape == (2, 7)


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18", "cifarnet"])
def test_channels_last_and_bf16_autocast(name):
    model = build_model(name).eval()
    x = _batch()
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x.to(memory_format=torch.channels_last))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


# ---------------------------------------------------------------- norm


@pytest.mark.parametrize("name", ["resnet20", "plain20", "cifarnet"])
def test_norm_none_removes_batchnorm(name):
    assert _count(build_model(name, norm="batch"), nn.BatchNorm2d) > 0
    model = build_model(name, norm="none")
    assert _count(model, nn.BatchNorm2d) == 0
    # without BN every conv carries its own bias
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet_has_batchnorm_after_every_conv():
    model = build_model("resnet20")
    assert _count(model, nn.BatchNorm2d) == _count(model, nn.Conv2d) == 19
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_same_parameters(depth):
    resnet, plain = build_model(f"resnet{depth}"), build_model(f"plain{depth}")
    assert count_parameters(plain) == count_parameters(resnet)
    assert resnet.state_dict().keys() == plain.state_dict().keys()


def test_plain_forward_differs_with_same_weights():
    resnet = build_model("resnet20").eval()
    plain = build_model("plain20").eval()
    plain.load_state_dict(resnet.state_dict())
    resnet.load_state_dict(plain.state_dict())
    x = _batch()
    with torch.no_grad():
        assert not torch.allclose(resnet(x), plain(x))


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("name, expected", [
    ("resnet20", 1), ("plain20", 1), ("resnet18", 1), ("cifarnet", 3)])
def test_dropout_present_only_when_asked(name, expected):
    assert _count(build_model(name), nn.Dropout) == 0
    model = build_model(name, dropout=0.15)
    assert _count(model, nn.Dropout) == expected
    assert all(m.p == 0.15 for m in model.modules() if isinstance(m, nn.Dropout))


def test_resnet_dropout_acts_before_fc():
    model = build_model("resnet20", dropout=0.5)
    assert isinstance(model.dropout, nn.Dropout)
    resnet18 = build_model("resnet18", dropout=0.5)
    assert isinstance(resnet18.fc[0], nn.Dropout) and resnet18.fc[1].out_features == 10


def test_dropout_changes_train_output_not_eval():
    model = build_model("resnet20", dropout=0.5)
    x = _batch()
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        assert not torch.allclose(a, model(x))


# ---------------------------------------------------------------- errors


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelError) as excinfo:
        build_model("resnet21")
    message = str(excinfo.value)
    assert "resnet21" in message
    assert all(name in message for name in MODELS)
    assert "did you mean" in message


@pytest.mark.parametrize("options", [
    {"norm": "layer"}, {"dropout": -0.1}, {"dropout": 1.0}, {"init": "xavier"},
    {"num_classes": 0}])
def test_bad_option_values(options):
    with pytest.raises(ModelError):
        build_model("resnet20", **options)


@pytest.mark.parametrize("options", [{"norm": "none"}, {"init": "torch"}])
def test_unsupported_option_on_resnet18(options):
    with pytest.raises(ModelError, match="does not support"):
        build_model("resnet18", **options)


# ---------------------------------------------------------------- init


def _last_conv_std(model: nn.Module) -> tuple[float, int]:
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    return conv.weight.std().item(), conv.weight[0].numel()  # numel of one filter = fan_in


@pytest.mark.parametrize("name", ["resnet20", "cifarnet"])
def test_init_he_vs_torch_weight_std(name):
    torch.manual_seed(0)
    he_std, fan_in = _last_conv_std(build_model(name, init="he"))
    torch_std, _ = _last_conv_std(build_model(name, init="torch"))
    assert he_std == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert torch_std == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)


def test_he_init_explodes_bn_less_resnet110():
    x = _batch()
    stds = {}
    for init in ("he", "torch"):
        torch.manual_seed(0)
        model = build_model("resnet110", norm="none", init=init).eval()
        with torch.no_grad():
            stds[init] = model(x).std().item()
    # measured: ~1e8 under "he" against ~0.3 under "torch"
    assert stds["torch"] < 10
    assert stds["he"] / stds["torch"] > 1e5


def test_every_entry_names_a_builder_that_exists():
    for info in MODELS.values():
        assert callable(builder(info)), info.builder


@pytest.mark.parametrize("name", [n for n in MODELS if n != "resnet1202"])
def test_catalog_parameter_counts_are_the_real_ones(name):
    # the report quotes catalog counts without importing torch: they must be the built model's
    assert MODELS[name].params == count_parameters(build_model(name))


# --- Fixup (Zhang et al. 2019) -----------------------------------------------------------------
def test_fixup_residual_branches_output_zero_at_init():
    from labreport.engine.networks import FixupBlock

    torch.manual_seed(0)
    model = build_model("resnet20", norm="none", init="fixup")
    blocks = [m for m in model.modules() if isinstance(m, FixupBlock)]
    assert len(blocks) == 9  # 3 stages x 3 blocks
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        h = torch.relu(model.conv1(x) + model.bias1)
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                assert torch.equal(block.branch(h), torch.zeros_like(block.branch(h)))
                out = block(h)
                assert torch.equal(out, torch.relu(block.shortcut(h)))  # the block is its shortcut
                h = out
    # the first branch conv is He-initialised and scaled by L^(-1/2), L = 9 branches
    std = blocks[4].conv1.weight.std().item()
    fan_in = blocks[4].conv1.weight[0].numel()
    assert std == pytest.approx(math.sqrt(2 / fan_in) / 3, rel=0.05)
    assert all(b.conv2.weight.abs().max() == 0 for b in blocks)


@pytest.mark.parametrize("depth", [20, 56, 110, 1202])
def test_fixup_output_at_init_is_finite_and_small_at_every_depth(depth):
    torch.manual_seed(0)
    model = build_model(f"resnet{depth}", norm="none", init="fixup")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, logits = model.features(x), model(x)
    assert torch.equal(logits, torch.zeros_like(logits))  # the classifier starts at zero
    # with every branch at zero the features are the stem's, whatever the depth: not exploding
    assert torch.isfinite(features).all() and features.abs().max() < 10


def test_fixup_trains_a_few_steps():
    torch.manual_seed(0)
    model = build_model("resnet20", norm="none", init="fixup")
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(10), rel=1e-6)  # zero logits: uniform prediction
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("name, norm, message", [
    ("resnet20", "batch", "use it with norm = 'none'"),
    ("plain20", "none", "has none"),
    ("cifarnet", "none", "has none"),
    ("resnet18", "batch", "has none"),
])
def test_fixup_is_refused_where_it_does_not_apply(name, norm, message):
    with pytest.raises(ModelError, match=message):
        build_model(name, norm=norm, init="fixup")
