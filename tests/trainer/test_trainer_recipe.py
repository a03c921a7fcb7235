"""Recipe: TF1 RMSProp semantics, cosine schedule by step, checkpoint steps, augmentation,
and TrainConfig's defaults, validation and JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ecnas.errors import InputError
from ecnas.trainer.augment import pad_crop_flip, standardize
from ecnas.trainer.optim import TFRMSprop
from ecnas.trainer.recipe import checkpoint_steps, learning_rate_at, parse_checkpoints
from ecnas.trainer.train import TrainConfig


def test_tf_rmsprop_matches_tf1_update_rule_with_changing_lr() -> None:
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=5)
    grads = rng.normal(size=(4, 5))
    lrs = [0.1, 0.08, 0.05, 0.01]
    decay, momentum, eps, wd = 0.9, 0.9, 1.0, 1e-4
    # reference: TF1 RMSPropOptimizer (ms starts at 1, eps inside the root, lr inside mom)
    w, ms, mom = w0.copy(), np.ones(5), np.zeros(5)
    for g, lr in zip(grads, lrs, strict=True):
        g = g + wd * w
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w = w - mom
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = TFRMSprop([p], lr=0.1, decay=decay, momentum=momentum, eps=eps, weight_decay=wd)
    for g, lr in zip(grads, lrs, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.param_groups[0]["lr"] = lr
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-12)
    # and it is not torch's RMSprop (eps outside the root, slots from 0)
    q = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    topt = torch.optim.RMSprop([q], lr=0.1, alpha=decay, momentum=momentum, eps=eps)
    q.grad = torch.tensor(grads[0], dtype=torch.float64)
    topt.step()
    assert not np.allclose(q.detach().numpy(), p.detach().numpy())


def test_cosine_schedule_by_step_over_the_budget() -> None:
    assert learning_rate_at(0, 100, 0.1) == pytest.approx(0.1)
    assert learning_rate_at(50, 100, 0.1) == pytest.approx(0.05)
    assert learning_rate_at(100, 100, 0.1) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate_at(25, 100, 0.1) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert learning_rate_at(7, 100, 0.1, "constant") == 0.1


def test_checkpoints_parse_and_map_to_steps() -> None:
    assert parse_checkpoints("1, 0,0.5") == (0.0, 0.5, 1.0)
    assert checkpoint_steps((0.0, 0.5, 1.0), 72) == [0, 36, 72]
    assert checkpoint_steps((0.0, 0.25), 3) == [0, 1]
    for bad in ("", "0,x", "1.5", "-0.1"):
        with pytest.raises(InputError):
            parse_checkpoints(bad)


def test_standardize_is_tf_per_image_standardization() -> None:
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    y = standardize(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(4), atol=1e-4)
    flat = standardize(torch.full((1, 3, 8, 8), 7, dtype=torch.uint8))
    assert torch.equal(flat, torch.zeros_like(flat))  # std floor 1/sqrt(n): no division by 0


def test_pad_crop_flip_takes_a_window_of_the_padded_image() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    gen = torch.Generator().manual_seed(3)
    out = pad_crop_flip(x, 2, True, gen)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert torch.equal(pad_crop_flip(x, 0, False, gen), x)
    # seeded: same generator state, same augmentation
    a = pad_crop_flip(x, 2, True, torch.Generator().manual_seed(9))
    b = pad_crop_flip(x, 2, True, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_train_config_defaults_per_dataset_and_json_round_trip() -> None:
    small = TrainConfig(matrix="0100", ops="input,output", budget_epochs=4)
    assert (small.stem_channels, small.cells_per_stack, small.batch_size) == (16, 1, 64)
    full = TrainConfig(matrix="0100", ops="input,output", budget_epochs=108, dataset="cifar10",
                       data_dir="/data/cifar")
    assert (full.stem_channels, full.num_stacks, full.cells_per_stack) == (128, 3, 3)
    assert (full.batch_size, full.learning_rate, full.bn_decay) == (256, 0.1, 0.997)
    wire = json.loads(json.dumps(full.to_dict()))
    assert TrainConfig.from_dict(wire) == full
    assert TrainConfig(matrix="0100", ops="input,output", budget_epochs=4, repeat=2).run_seed \
        != small.run_seed


@pytest.mark.parametrize("change, match", [
    ({"budget_epochs": 0}, "budget_epochs"),
    ({"repeat": 0}, "repeat"),
    ({"device": "tpu"}, "device"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"checkpoints": "0,2"}, "fraction"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"ops": "input,conv9x9,output", "matrix": "011001000"}, "unknown op"),
    ({"matrix": "0000", "ops": "input,output"}, "invalid cell"),
])
def test_train_config_rejects_bad_values_with_one_line(change: dict, match: str) -> None:
    base = {"matrix": "0100", "ops": "input,output", "budget_epochs": 4}
    with pytest.raises(InputError, match=match):
        TrainConfig(**{**base, **change})


def test_from_dict_names_unknown_and_missing_keys() -> None:
    with pytest.raises(InputError, match="unknown key.*epochs"):
        TrainConfig.from_dict({"matrix": "0100", "ops": "input,output", "epochs": 4})
    with pytest.raises(InputError, match="budget_epochs"):
        TrainConfig.from_dict({"matrix": "0100", "ops": "input,output"})
