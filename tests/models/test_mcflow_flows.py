"""MCFlow probability paths and the coordinate loss: torus geometry and translation freedom."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from models.mcflow.config import FlowConfig, NetworkConfig
from models.mcflow.data import Priors, item_from_structure
from models.mcflow.flows import (
    angles_to_units,
    coord_velocity_loss,
    interpolate_coords,
    remove_mean_translation,
    wrap,
)
from models.mcflow.model import MCFlowNet
from models.mcflow.sampling import SampleSpec, coord_step_fraction, generate

PRIORS = Priors(
    length_mu=[0.85, 0.97, 1.25],
    length_sigma=[0.24, 0.22, 0.29],
    n_atoms_counts={2: 3, 4: 1},
    element_counts={7: 2, 13: 1},
)


def _mask() -> torch.Tensor:
    return torch.tensor([[True, True, True, False], [True, True, False, False]])


def test_geodesic_ends_at_data_and_takes_the_short_way() -> None:
    f0 = torch.tensor([[[0.95, 0.1, 0.5]]])
    f1 = torch.tensor([[[0.05, 0.3, 0.5]]])
    assert torch.allclose(interpolate_coords(f0, f1, torch.tensor([1.0])), f1, atol=1e-6)
    mid = interpolate_coords(f0, f1, torch.tensor([0.5]))
    # 0.95 → 0.05 crosses the cell boundary (distance 0.1), not the interior (0.9).
    assert torch.allclose(mid, torch.tensor([[[0.0, 0.2, 0.5]]]), atol=1e-6)
    assert torch.allclose(wrap(torch.tensor([0.7, -0.7, 0.2])), torch.tensor([-0.3, 0.3, 0.2]))


def test_remove_mean_translation_centres_real_atoms_only() -> None:
    mask = _mask()
    disp = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    free = remove_mean_translation(disp, mask)
    assert torch.allclose(free[0, :3].sum(0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(free[1, :2].sum(0), torch.zeros(3), atol=1e-6)
    assert torch.equal(free[~mask], torch.zeros_like(free[~mask]))
    # Relative displacements between real atoms are unchanged.
    assert torch.allclose(free[0, 0] - free[0, 1], disp[0, 0] - disp[0, 1], atol=1e-6)


def test_translation_free_loss_ignores_a_global_shift_of_the_prediction() -> None:
    gen = torch.Generator().manual_seed(1)
    mask = _mask()
    f1 = torch.rand(2, 4, 3, generator=gen)
    f_s = torch.rand(2, 4, 3, generator=gen)
    s = torch.tensor([0.3, 0.8])
    exact = wrap(f1 - f_s)
    shifted = exact + torch.tensor([[[0.1, -0.2, 0.05]], [[0.3, 0.0, -0.1]]])
    assert coord_velocity_loss(exact, f_s, f1, mask, s, 0.9).item() < 1e-10
    assert coord_velocity_loss(shifted, f_s, f1, mask, s, 0.9).item() > 1e-3
    assert coord_velocity_loss(shifted, f_s, f1, mask, s, 0.9, translation_free=True) < 1e-10
    # A relative error is still penalized.
    wrong = exact.clone()
    wrong[0, 0] += 0.1
    assert coord_velocity_loss(wrong, f_s, f1, mask, s, 0.9, translation_free=True) > 1e-4


@pytest.mark.parametrize(
    "geometry",
    [{"geometry": "paper"}, {"pair_frequencies": 8}, {"edge_hidden": 16}, {"pair_distances": 8}],
)
def test_coordinate_features_are_periodic_for_every_frequency(geometry: dict) -> None:
    torch.manual_seed(0)
    network = NetworkConfig(hidden=32, depth=1, heads=2, coord_frequencies=4, **geometry)
    net = MCFlowNet(network, FlowConfig(), PRIORS).eval()
    for p in net.parameters():  # the heads start at zero: give them weights
        torch.nn.init.normal_(p, std=0.1)
    mask = _mask()
    types = torch.tensor([[7, 13, 7, 100], [7, 7, 100, 100]])
    frac = torch.rand(2, 4, 3)
    lengths, units = torch.full((2, 3), 2.0), torch.zeros(2, 3)
    t, s = torch.tensor([1.0, 0.5]), torch.tensor([0.2, 0.7])
    out = net(types, frac, lengths, units, t, s, mask)
    moved = net(types, frac + torch.tensor([1.0, -2.0, 3.0]), lengths, units, t, s, mask)
    assert torch.allclose(out.coord_disp[mask], moved.coord_disp[mask], atol=1e-4)
    # ... while a shift inside the cell does change it.
    nudged = net(types, frac + 0.01, lengths, units, t, s, mask)
    assert not torch.allclose(out.coord_disp[mask], nudged.coord_disp[mask], atol=1e-4)


def test_translation_free_sampling_moves_atoms_without_net_drift() -> None:
    specs = [SampleSpec(3, types=[7, 13, 7]), SampleSpec(2, types=[7, 7])]
    torch.manual_seed(0)
    untrained = MCFlowNet(NetworkConfig(hidden=32, depth=1, heads=2), FlowConfig(), PRIORS)
    # Zero-initialized coordinate head: one step leaves the prior draw where it is.
    prior = generate(untrained, specs, "csp", steps=1, seed=5)
    for translation_free in (True, False):
        net = MCFlowNet(
            NetworkConfig(hidden=32, depth=1, heads=2),
            FlowConfig(translation_free=translation_free),
            PRIORS,
        )
        net.load_state_dict(untrained.state_dict())
        torch.nn.init.normal_(net.coord_head.weight, std=0.02)
        torch.nn.init.constant_(net.coord_head.bias, 0.1)  # a global drift
        moved = generate(net, specs, "csp", steps=1, seed=5)
        for a, b in zip(prior, moved, strict=True):
            step = wrap(torch.from_numpy(b.frac - a.frac).double())
            assert step.abs().max() > 1e-3
            drift = step.mean(0).abs().max().item()
            assert (drift < 1e-5) if translation_free else (drift > 0.05)


def test_coord_step_fraction_follows_the_paper_schedule_and_anneals_without_overshoot() -> None:
    steps = 10
    remaining, remaining_annealed = 1.0, 1.0
    for i in range(steps):
        s, ds = i / steps, 1.0 / steps
        plain = coord_step_fraction(s, ds)
        annealed = coord_step_fraction(s, ds, anneal_slope=5.0)
        assert plain == pytest.approx(ds / (1 - s))
        assert plain <= annealed <= 1.0
        # Toward a fixed target the paper's Euler steps close the gap linearly in s.
        remaining *= 1 - plain
        remaining_annealed *= 1 - annealed
        assert remaining == pytest.approx(1 - (i + 1) / steps, abs=1e-12)
        assert remaining_annealed <= remaining + 1e-12
    assert remaining == pytest.approx(0.0, abs=1e-12) and remaining_annealed == 0.0
    assert coord_step_fraction(0.6, 0.1, anneal_slope=10.0) == 1.0  # 0.25 × 7 is capped


def test_anneal_slope_zero_is_the_paper_sampler_and_a_slope_moves_atoms_further() -> None:
    specs = [SampleSpec(3, types=[7, 13, 7]), SampleSpec(2, types=[7, 7])]
    torch.manual_seed(0)
    net = MCFlowNet(NetworkConfig(hidden=32, depth=1, heads=2), FlowConfig(), PRIORS)
    torch.nn.init.normal_(net.coord_head.weight, std=0.05)
    plain = generate(net, specs, "csp", steps=4, seed=5)
    same = generate(net, specs, "csp", steps=4, seed=5, anneal_slope=0.0)
    annealed = generate(net, specs, "csp", steps=4, seed=5, anneal_slope=5.0)
    for a, b, c in zip(plain, same, annealed, strict=True):
        assert (a.frac == b.frac).all() and (a.lengths == b.lengths).all()
        assert not np.allclose(a.frac, c.frac, atol=1e-4)
    with pytest.raises(ValueError, match="anneal_slope"):
        generate(net, specs, "csp", steps=4, seed=5, anneal_slope=-1.0)


def test_pair_distances_are_pymatgens_minimum_image_distances() -> None:
    rng = np.random.default_rng(3)
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 80, 100, 110)
    structure = Structure(lattice, ["Na", "Cl", "Cl", "O"], rng.random((4, 3)))
    item = item_from_structure("x", structure.get_reduced_structure())
    network = NetworkConfig(hidden=32, depth=1, heads=2, pair_distances=8)
    net = MCFlowNet(network, FlowConfig(), PRIORS)
    as_tensor = partial(torch.tensor, dtype=torch.float64)
    distances = net.double().pair_distances(
        as_tensor(item.frac[None]),
        as_tensor(item.lengths[None]),
        angles_to_units(as_tensor(item.angles[None])),
        torch.ones(1, 4, dtype=torch.bool),
    )[0]
    cell = Lattice.from_parameters(*(item.lengths * 4 ** (1 / 3)), *item.angles)
    expected = Structure(cell, ["H"] * 4, item.frac).distance_matrix
    np.testing.assert_allclose(distances.numpy(), expected, atol=1e-9)
    assert expected[0, 1] > 1.0  # not a degenerate structure


def test_pair_distances_need_the_pair_network() -> None:
    with pytest.raises(ValueError, match="pair_distances needs"):
        NetworkConfig(geometry="paper", pair_distances=8)
