"""GainConfig presets: the public GAIN implementations' choices, each cited, each trainable."""

import json
import re
from dataclasses import asdict

import pytest
import torch
from tiny import TinyNet, TinyScenes

import gainlib.presets
from gainlib.data.protocol import collate_samples
from gainlib.gain import GAIN, GainConfig

# The fields the chapter varies, as each preset's docstring states them (file and line there).
EXPECTED = {
    "gainlib": dict(sigma=0.5, omega=10.0, alpha=1.0, ext_weight=10.0, normalization="max",
                    detach_normalizer=False, am_score="sigmoid", detach_weights=False,
                    fill="blur", am_batchnorm="batch"),
    "alokwhitewolf": dict(sigma=0.5, omega=8.0, alpha=0.2, ext_weight=10.0, normalization="minmax",
                          detach_normalizer=True, am_score="sigmoid", detach_weights=True,
                          fill="zero", am_batchnorm="batch"),
    "ilyak93": dict(sigma=0.5, omega=10.0, alpha=1.0, ext_weight=1.0, normalization="minmax",
                    detach_normalizer=False, am_score="softmax", detach_weights=True,
                    fill="mean", am_batchnorm="eval"),
    "ngxbac": dict(sigma=0.25, omega=100.0, alpha=0.25, ext_weight=10.0,
                   normalization="batch_minmax", detach_normalizer=False, am_score="max_softmax",
                   detach_weights=True, fill="mean", am_batchnorm="train"),
    "austindoolittle": dict(sigma=0.4, omega=100.0, alpha=1.0, ext_weight=10.0,
                            normalization="minmax", detach_normalizer=False, am_score="sigmoid",
                            detach_weights=True, fill="zero", am_batchnorm="train"),
}
REPOSITORIES = {
    "alokwhitewolf": "alokwhitewolf/Guided-Attention-Inference-Network",
    "ilyak93": "ilyak93/GAIN-pytorch",
    "ngxbac": "ngxbac/GAIN",
    "austindoolittle": "AustinDoolittle/Pytorch-Gain",
}


def test_every_preset_is_tested():
    assert set(gainlib.presets.PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_builds_the_configuration_its_docstring_describes(name):
    config = GainConfig.preset(name)
    assert {k: getattr(config, k) for k in EXPECTED[name]} == EXPECTED[name]
    # The rest stays at gainlib's defaults (the presets do not touch the blur or the images'
    # normalisation).
    rest = {k: v for k, v in asdict(config).items() if k not in EXPECTED[name]}
    assert rest == {k: v for k, v in asdict(GainConfig()).items() if k not in EXPECTED[name]}
    doc = gainlib.presets.PRESETS[name].__doc__
    for field, value in EXPECTED[name].items():
        # Every value is stated in the docstring as "<field> <value>" (then cited there).
        if isinstance(value, str):
            stated = f'"{value}"'
        else:
            stated = str(value) if isinstance(value, bool) else f"{value:g}"
        assert re.search(rf"{field} {re.escape(stated)}(?![\w.])", doc), (name, field, stated)
    if name != "gainlib":
        assert doc.startswith(REPOSITORIES[name])
        assert "line" in doc and "Not reproduced" in doc


def test_gainlib_preset_is_the_default_config():
    assert GainConfig.preset("gainlib") == GainConfig()


def test_overrides_change_one_factor():
    config = GainConfig.preset("ngxbac", fill="blur")
    assert config.fill == "blur" and config.am_score == "max_softmax" and config.sigma == 0.25
    with pytest.raises(TypeError):
        GainConfig.preset("ngxbac", no_such_field=1)


def test_unknown_preset_raises_a_key_error_listing_the_names():
    with pytest.raises(KeyError) as error:
        GainConfig.preset("pytorch-gain")
    message = str(error.value)
    assert "pytorch-gain" in message
    assert all(repr(name) in message for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_config_survives_a_json_round_trip(name):
    # Checkpoints and run caches store asdict(config); reading it back must compare equal.
    config = GainConfig.preset(name)
    assert GainConfig(**json.loads(json.dumps(asdict(config)))) == config


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_gain_step_runs_with_every_preset(name):
    data = TinyScenes(n=6, pixel=(0, 1), box=(2, 3))
    batch = collate_samples([data[i] for i in range(6)])
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features", GainConfig.preset(name)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    out = model.stream_losses(batch, ext_batch=batch)
    assert set(out) == {"cl", "am", "ext", "total"}
    assert all(torch.isfinite(v) for v in out.values())
    config = model.config
    torch.testing.assert_close(out["total"],
                               out["cl"] + config.alpha * out["am"] + config.ext_weight * out["ext"])
    out["total"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
