"""Models of one's own: what the report calls them, and which catalogue model they are compared as
(declared, or by the parameters their trained runs counted), on hand-made runs."""

from __future__ import annotations

from labreport.models import MODELS
from labreport.ownmodels import Declared, display_name, model_id
from labreport.science.bnclaim import bn_claims
from labreport.science.conclusions import conclude, group_runs, paper_comparison
from labreport.science.identity import identify
from views import view

RESNET110 = MODELS["resnet110"].params  # 1,727,962: the catalogue's and the README example's


def own(exp, acc, *, ref="nets.py:ResNet", args=None, params=RESNET110, norm="batch", seed=None, **kw):
    """A run of a model of one's own; with BatchNorm it counted `params`."""
    v = view(exp, acc, model=ref, norm=norm, seed=seed, task="5", **kw)
    if args:
        v.spec["model_args"] = dict(args)
    if v.result is not None:
        v.result["params"] = params if norm == "batch" else params - 4_048  # BN's scale and shift out, biases in
    return v


def test_the_default_name_is_the_class_and_its_depth():
    assert display_name("nets.py:ResNet", {"depth": 110}) == "ResNet-110"
    assert display_name("nets.py:ResNet110", {"depth": 110}) == "ResNet110"  # the class says it already
    assert display_name("nets.py:Net", {}) == "Net"
    assert display_name("nets.py:Net", {}, Declared(depth=56)) == "Net-56"
    assert display_name("nets.py:ResNet", {"depth": 110}, Declared(display_name="Моя ResNet")) == "Моя ResNet"
    assert model_id({"model": "nets.py:ResNet", "model_args": {"width": 16, "depth": 110}}) == \
        "nets.py:ResNet(depth=110, width=16)"
    assert model_id({"model": "resnet110"}) == "resnet110"


def test_the_catalogues_parameter_count_makes_it_that_model():
    runs = [own("mine", 0.9, args={"depth": 110}, seed=s) for s in range(2)]
    runs += [own("mine", 0.1, args={"depth": 110}, norm="none", seed=s) for s in range(2)]
    (m,) = identify(runs).values()
    assert (m.id, m.name, m.implements, m.basis, m.params) == (
        "nets.py:ResNet(depth=110)", "ResNet-110", "resnet110", "parameters", RESNET110)


def test_resnet_and_plain_share_a_count_so_the_name_decides():
    assert identify([own("a", 0.9, ref="nets.py:PlainNet")])["nets.py:PlainNet"].implements == "plain110"
    neither = identify([own("a", 0.9, ref="nets.py:Net")])["nets.py:Net"]
    assert neither.implements is None and neither.basis is None  # no identity it may not have
    other = identify([own("a", 0.9, ref="nets.py:ResNet", params=RESNET110 + 1)])["nets.py:ResNet"]
    assert other.implements is None


def test_a_declared_family_and_depth_make_it_that_model_whatever_it_counts():
    runs = [own("mine", 0.9, ref="nets.py:Net", args={"depth": 56}, params=123)]
    (m,) = identify(runs, {"mine": Declared(display_name="Моя сеть", family="cifar-resnet")}).values()
    assert (m.name, m.implements, m.basis) == ("Моя сеть", "resnet56", "declared")


def test_one_name_over_a_grid_of_model_args_is_told_apart():
    runs = [own("mine", 0.9, args={"depth": d}, params=MODELS[f"resnet{d}"].params) for d in (20, 110)]
    names = identify(runs, {"mine": Declared(display_name="Моя ResNet")})
    assert [m.name for m in names.values()] == ["Моя ResNet (depth=20)", "Моя ResNet (depth=110)"]
    assert [m.implements for m in names.values()] == ["resnet20", "resnet110"]


def test_the_paper_comparison_has_the_students_row_beside_the_catalogues():
    runs = [view("cat", 0.92, model="resnet110", seed=s, task="5") for s in range(2)]
    runs += [own("mine", 0.93, args={"depth": 110}, seed=s) for s in range(3)]
    runs += [own("other", 0.5, ref="nets.py:Net", params=7)]  # implements nothing: not compared
    study = conclude(runs, 0.2, 0.1)
    rows = [(p.model, p.own, p.n) for p in study.paper]
    assert rows == [("resnet110", None, 2), ("resnet110", "nets.py:ResNet(depth=110)", 3)]
    mine = study.paper[1]
    assert abs(mine.ours_error - 7.0) < 1e-9 and mine.paper_std == 0.16 and mine.within is False
    assert paper_comparison(group_runs(runs)) == list(study.paper[:1])  # without identities: the catalogue's only


def test_an_own_model_on_another_data_set_is_not_compared_with_the_papers_cifar10():
    runs = [own("mine", 0.7, args={"depth": 110}, dataset="cifar100")]
    assert conclude(runs, None, 0.1).paper == ()


def test_the_bn_claim_tells_two_depths_of_one_class_apart():
    runs = []
    for d in (20, 110):
        runs += [own(f"bn{d}", 0.9, args={"depth": d}), own(f"nobn{d}", 0.1, args={"depth": d}, norm="none")]
    assert [c.model for c in bn_claims(runs, 0.2, 0.1)] == ["nets.py:ResNet(depth=20)", "nets.py:ResNet(depth=110)"]
