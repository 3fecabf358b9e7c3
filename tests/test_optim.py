"""AdamW against torch.optim.AdamW and the CS336 snapshot; the cosine schedule; gradient clipping."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from scratchlm.optim import AdamW, clip_gradients, get_lr_cosine_schedule


def regression_weights(optimizer_class, steps: int = 1000) -> torch.Tensor:
    """The CS336 AdamW test problem: a seeded Linear(3, 2) fit to y = (x0 + x1, -x2)."""
    torch.manual_seed(42)
    model = torch.nn.Linear(3, 2, bias=False)
    optimizer = optimizer_class(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.rand(model.in_features)
        loss = ((torch.stack([x[0] + x[1], -x[2]]) - model(x)) ** 2).sum()
        loss.backward()
        optimizer.step()
    return model.weight.detach()


def test_adamw_matches_snapshot_and_torch(fixtures_dir):
    ours = regression_weights(AdamW)
    with np.load(fixtures_dir / "snapshots" / "test_adamw.npz") as data:
        expected = torch.from_numpy(data["array"])
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, regression_weights(torch.optim.AdamW), atol=1e-6, rtol=0)


def test_adamw_matches_torch_step_for_step_with_groups():
    def make():
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(5, 4)), torch.nn.Parameter(torch.randn(7)),
                torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]

    ours_params, ref_params = make(), make()
    settings = dict(lr=3e-3, betas=(0.85, 0.97), eps=1e-6)
    ours = AdamW([{"params": ours_params[:2], "weight_decay": 0.1}, {"params": ours_params[2:], "weight_decay": 0.0}],
                 **settings)
    ref = torch.optim.AdamW([{"params": ref_params[:2], "weight_decay": 0.1},
                             {"params": ref_params[2:], "weight_decay": 0.0}], **settings)
    for step in range(25):
        for params in (ours_params, ref_params):
            loss = sum((p.double() ** 3).sum() * (i + 1) for i, p in enumerate(params))
            for p in params:
                p.grad = None
            loss.backward()
            if step % 5 == 4:  # a parameter without a gradient is skipped, its step count stays behind
                params[1].grad = None
        for group in (*ours.param_groups, *ref.param_groups):
            group["lr"] = 3e-3 * (1 + step % 3)  # the schedule changes lr between steps
        ours.step()
        ref.step()
        for a, b in zip(ours_params, ref_params):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert ours.state[ours_params[1]]["step"] == 20 and ours.state[ours_params[0]]["step"] == 25


def test_adamw_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    with torch.no_grad():
        b.copy_(a)
    opt_a, opt_b = AdamW([a], lr=0.1), AdamW([b], lr=0.5)
    for _ in range(3):
        a.grad = a.detach() ** 2
        opt_a.step()
    with torch.no_grad():
        b.copy_(a)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # loading shares same-dtype tensors
    for p, opt in ((a, opt_a), (b, opt_b)):
        p.grad = torch.ones(4)
        opt.step()
    assert torch.equal(a, b)


def test_adamw_rejects_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(1))]
    for bad in (dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(eps=-1e-8), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError, match="AdamW"):
            AdamW(p, **bad)


def test_cosine_schedule_known_values():
    expected = [
        0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
        0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
        0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414, 0.55,
        0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
        0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1,
    ]
    actual = [get_lr_cosine_schedule(it, max_learning_rate=1, min_learning_rate=0.1, warmup_iters=7,
                                     cosine_cycle_iters=21) for it in range(25)]
    assert actual == pytest.approx(expected, abs=1e-12)


def test_cosine_schedule_without_warmup():
    assert get_lr_cosine_schedule(0, 2.0, 0.0, 0, 10) == 2.0
    assert get_lr_cosine_schedule(5, 2.0, 0.0, 0, 10) == pytest.approx(1.0)
    assert get_lr_cosine_schedule(10, 2.0, 0.0, 0, 10) == 0.0


def test_clip_gradients_matches_torch_and_returns_pre_clip_norm():
    def make():
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5)),
                  torch.nn.Parameter(torch.randn(2))]
        for p in params[:2]:
            p.grad = torch.randn_like(p) * 3
        return params  # the last one has no gradient and is ignored

    ours, ref = make(), make()
    expected_norm = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    norm = float(clip_gradients(ours, 1.0))
    assert norm == pytest.approx(expected_norm.item(), rel=1e-6)
    assert norm > 1.0
    for a, b in zip(ours[:2], ref[:2]):
        torch.testing.assert_close(a.grad, b.grad)
    assert math.sqrt(sum(p.grad.square().sum().item() for p in ours[:2])) == pytest.approx(1.0, rel=1e-5)


def test_clip_gradients_leaves_small_gradients_alone():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.1, -0.2, 0.2])
    assert float(clip_gradients([p], 5.0)) == pytest.approx(0.3)
    assert torch.equal(p.grad, torch.tensor([0.1, -0.2, 0.2]))
    assert float(clip_gradients([torch.nn.Parameter(torch.zeros(1))], 1.0)) == 0.0


def test_linear_and_wsd_schedules_known_values():
    from scratchlm.optim import schedule_lr

    # 10 steps, 2 of warm-up, decay to 0: a straight line from step 2 to step 10.
    linear = [schedule_lr("linear", it, 1.0, 0.0, 2, 10, 3) for it in range(12)]
    assert linear == pytest.approx([0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0])
    # WSD: flat at the peak until the last 3 steps, then down to min at step 10.
    wsd = [schedule_lr("wsd", it, 1.0, 0.1, 2, 10, 3) for it in range(12)]
    assert wsd == pytest.approx([0, 0.5, 1, 1, 1, 1, 1, 1, 0.7, 0.4, 0.1, 0.1])
    assert schedule_lr("cosine", 5, 1.0, 0.1, 2, 10, 3) == get_lr_cosine_schedule(5, 1.0, 0.1, 2, 10)
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        schedule_lr("step", 1, 1.0, 0.1, 2, 10, 3)


@pytest.mark.parametrize("scale, nesterov", [("original", True), ("match_rms_adamw", False)])
def test_muon_matches_torch_muon_and_adamw_step_for_step(scale, nesterov):
    """Muon groups against torch.optim.Muon, the other groups against torch.optim.AdamW, in one optimizer."""
    from scratchlm.optim import Muon

    def make():
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(3, 8)),
                torch.nn.Parameter(torch.randn(5, 4)), torch.nn.Parameter(torch.randn(7))]

    ours_params, ref_params = make(), make()
    muon = {"momentum": 0.9, "nesterov": nesterov, "ns_steps": 5}
    ours = Muon([{"params": ours_params[:2], "muon": True, "lr": 0.02, "weight_decay": 0.05, "scale": scale, **muon},
                 {"params": ours_params[2:], "weight_decay": 0.1}], lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    ref_muon = torch.optim.Muon(ref_params[:2], lr=0.02, weight_decay=0.05, adjust_lr_fn=scale, **muon)
    ref_adamw = torch.optim.AdamW(ref_params[2:], lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for step in range(12):
        for params in (ours_params, ref_params):
            loss = sum((p ** 3).sum() * (i + 1) + (p.sin() * p).sum() for i, p in enumerate(params))
            for p in params:
                p.grad = None
            loss.backward()
        ours.step(), ref_muon.step(), ref_adamw.step()
        for a, b in zip(ours_params, ref_params):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_muon_state_dict_round_trip_continues_identically():
    from scratchlm.optim import Muon

    def run(steps: int, resume_at: int | None = None) -> torch.Tensor:
        torch.manual_seed(1)
        w, g = torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.randn(6))
        make = lambda: Muon([{"params": [w], "muon": True, "lr": 0.05, "weight_decay": 0.0, "momentum": 0.95,  # noqa: E731
                              "nesterov": True, "ns_steps": 5, "scale": "original"}, {"params": [g]}], lr=1e-2)
        opt = make()
        for step in range(steps):
            if step == resume_at:
                saved = opt.state_dict()
                opt = make()
                opt.load_state_dict(saved)
            opt.zero_grad()
            ((w @ g).square().sum() + w.abs().sum()).backward()
            opt.step()
        return torch.cat([w.detach().flatten(), g.detach()])

    assert torch.equal(run(8), run(8, resume_at=3))


def test_orthogonalize_gives_singular_values_near_one():
    from scratchlm.optim.muon import orthogonalize

    torch.manual_seed(0)
    for rows, cols in [(16, 64), (64, 16), (32, 32)]:
        rank = min(rows, cols)
        left, right = torch.linalg.qr(torch.randn(rows, rank))[0], torch.linalg.qr(torch.randn(cols, rank))[0]
        matrix = left @ torch.diag(torch.logspace(-1, 1, rank)) @ right.T  # singular values 0.1 .. 10
        values = torch.linalg.svdvals(orthogonalize(matrix).float())
        assert values.min() > 0.5 and values.max() < 1.3, (rows, cols)


def test_muon_refuses_what_it_cannot_update():
    from scratchlm.optim import Muon

    group = {"muon": True, "lr": 0.02, "weight_decay": 0.0, "momentum": 0.95, "nesterov": True, "ns_steps": 5,
             "scale": "original"}
    with pytest.raises(ValueError, match="2-D matrices only"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(3))], **group}])
    with pytest.raises(ValueError, match="bad Muon group"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(3, 3))], **group, "scale": "sideways"}])
