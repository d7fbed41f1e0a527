"""The GAIN streams: the losses train the network *through* the attention maps."""

import pytest
import torch
from tiny import TinyNet, TinyScenes

import gainlib.attention
import gainlib.gain
from gainlib.data.protocol import collate_samples
from gainlib.gain import GAIN, GainConfig


def _batch(indices=range(6), **kw):
    data = TinyScenes(n=12, pixel=(0, 1, 2), box=(3, 4, 5), **kw)
    return collate_samples([data[i] for i in indices])


def _param_grads(model, loss):
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_stream_losses_terms():
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features")
    batch = _batch()
    plain = model.stream_losses(batch, attention_mining=False)
    assert set(plain) == {"cl", "total"}
    gain = model.stream_losses(batch)
    assert set(gain) == {"cl", "am", "total"} and 0 <= gain["am"] <= 1
    torch.testing.assert_close(gain["total"], gain["cl"] + gain["am"])
    ext = model.stream_losses(batch, ext_batch=batch)
    torch.testing.assert_close(ext["total"], ext["cl"] + ext["am"] + 10 * ext["ext"])


def test_alpha_zero_runs_the_classification_and_extra_streams_only():
    # The paper's camera model (Sec. 5.2): S_cl and S_e, no attention mining.
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features", GainConfig(alpha=0.0))
    batch = _batch()
    ext = model.stream_losses(batch, ext_batch=batch)
    assert set(ext) == {"cl", "ext", "total"}
    torch.testing.assert_close(ext["total"], ext["cl"] + 10 * ext["ext"])
    torch.testing.assert_close(ext["cl"], model.stream_losses(batch, attention_mining=False)["cl"])


def _detached_soft_mask(monkeypatch):
    original = gainlib.gain.soft_mask
    monkeypatch.setattr(gainlib.gain, "soft_mask", lambda a, s, w: original(a.detach(), s, w))


def test_attention_mining_gradient_flows_through_the_map(monkeypatch):
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features")
    batch = _batch()
    through_map = _param_grads(model, model.stream_losses(batch)["am"])
    _detached_soft_mask(monkeypatch)
    without_map = _param_grads(model, model.stream_losses(batch)["am"])
    # Detaching A^c must change the gradient of L_am on the network's parameters.
    difference = sum((a - b).abs().sum() for a, b in zip(through_map, without_map))
    assert difference > 1e-6


def test_pixel_and_box_losses_train_backbone_and_head_through_the_map():
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features")
    ext = model.extra_supervision(_batch(range(6)))
    grads = dict(zip([n for n, _ in model.named_parameters()], _param_grads(model, ext)))
    assert grads["classifier.features.0.weight"].abs().sum() > 0   # through f_l
    assert grads["classifier.classifier.2.weight"].abs().sum() > 0  # through w^c (second order)
    detached = GAIN(TinyNet(), "features", GainConfig(detach_weights=True))
    grads = dict(zip([n for n, _ in detached.named_parameters()],
                     _param_grads(detached, detached.extra_supervision(_batch(range(6))))))
    assert grads["classifier.classifier.2.weight"].abs().sum() == 0


def test_extra_supervision_uses_each_samples_own_label_kind():
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features")
    pixel_only = _batch(range(0, 3))     # flagged use_mask
    box_only = _batch(range(3, 6))       # flagged use_boxes
    none = _batch(range(6, 9))           # no flags: contributes nothing
    assert model.extra_supervision(pixel_only) > 0 and model.extra_supervision(box_only) > 0
    assert model.extra_supervision(none) == 0
    mixed = model.extra_supervision(_batch(range(0, 6)))
    assert torch.isfinite(mixed)


@pytest.mark.parametrize("mode,updates_running_stats", [("batch", False), ("eval", False), ("train", True)])
def test_attention_mining_batchnorm_modes_and_running_stats(mode, updates_running_stats):
    batch = _batch()
    torch.manual_seed(0)
    plain = GAIN(TinyNet(), "features").train()
    plain.stream_losses(batch, attention_mining=False)
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features", GainConfig(am_batchnorm=mode)).train()
    model.stream_losses(batch)
    bn = model.classifier.features[1]
    changed = not torch.allclose(bn.running_mean, plain.classifier.features[1].running_mean)
    assert changed == updates_running_stats
    assert model.training and bn.training   # modes are restored after S_am


def test_batch_mode_scores_an_unerased_image_exactly_as_s_cl_did(monkeypatch):
    # T(A) = 0 (a sigma past every attention value, which GainConfig's [0, 1] range refuses,
    # so the soft mask is replaced): I* = I and S_am must reproduce the S_cl logits, which
    # only holds if S_am normalises with S_cl's batch statistics.
    batch = _batch()
    captured = {}
    original = gainlib.gain.attention_mining_loss
    monkeypatch.setattr(gainlib.gain, "attention_mining_loss",
                        lambda m, c, v, s: captured.update(masked=m, classes=c, valid=v) or original(m, c, v, s))
    monkeypatch.setattr(gainlib.gain, "soft_mask", lambda a, s, w: torch.zeros_like(a))
    for mode, should_match in (("batch", True), ("eval", False)):
        torch.manual_seed(0)
        model = GAIN(TinyNet(), "features", GainConfig(am_batchnorm=mode)).train()
        model.classifier.features[1].running_var.fill_(4.0)   # running stats unlike the batch's
        model.stream_losses(batch)
        torch.manual_seed(0)
        reference = GAIN(TinyNet(), "features").train()
        reference.classifier.features[1].running_var.fill_(4.0)
        logits = reference(batch["image"])
        expected = logits[:, None, :].expand_as(captured["masked"])[captured["valid"]]
        close = torch.allclose(captured["masked"][captured["valid"]], expected, atol=1e-5)
        assert close == should_match, mode


def test_config_rejects_unknown_modes():
    with pytest.raises(ValueError, match="am_batchnorm"):
        GainConfig(am_batchnorm="frozen")
    with pytest.raises(ValueError, match="normalization"):
        GainConfig(normalization="sum")


def _radial_gradient(model, batch):
    """d L_am(lambda * theta) / d lambda at 1 for the first conv's (weight, bias), relative to
    |grad| * |theta|. BatchNorm follows that conv, so in S_cl the network is invariant to the
    scale of theta; if S_am normalises with S_cl's statistics *as functions of theta*, L_am is
    invariant too and the radial derivative is 0."""
    conv = model.classifier.features[0]
    loss = model.stream_losses(batch)["am"]
    grads = torch.autograd.grad(loss, [conv.weight, conv.bias])
    radial = sum((g * p).sum() for g, p in zip(grads, (conv.weight, conv.bias)))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads)) * torch.sqrt(
        sum((p ** 2).sum() for p in (conv.weight, conv.bias)))
    return (radial / norm).abs().item()


def test_batch_mode_gradient_respects_batchnorm_scale_invariance(monkeypatch):
    batch = _batch()
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features", GainConfig(am_batchnorm="batch")).train()
    assert _radial_gradient(model, batch) < 1e-4
    # With the statistics detached (constants in S_am), L_am is no longer scale invariant:
    # its gradient pushes the weights along a direction the next S_cl pass undoes.
    original = gainlib.gain._recorded_batch_stats

    def detached(module):
        class Detached:
            def __enter__(self):
                self.context = original(module)
                self.stats = self.context.__enter__()
                return self.stats

            def __exit__(self, *exc):
                for norm, (mean, var) in list(self.stats.items()):
                    self.stats[norm] = (mean.detach(), var.detach())
                return self.context.__exit__(*exc)
        return Detached()

    monkeypatch.setattr(gainlib.gain, "_recorded_batch_stats", detached)
    assert _radial_gradient(model, batch) > 1e-2


# Losses and per-parameter gradient norms of one full step (S_cl + S_am + S_e) on the tiny
# batch, recorded before the fill/normalisation/score switches existed: with the fill of Eq. 3
# ("mean", the default then), the defaults (and the switches that existed then) must compute
# what they computed. Recorded bit for bit on
# 2 CPU threads; compared with a tolerance so other CPUs' kernels do not fail it.
_RECORDED = {
    "default": ({}, [0.706930339, 0.48089397, 0.130757824, 2.49540234],
                [2.8117962, 6.0480562e-07, 0.21990094, 0.18411919, 5.5413508, 1.7615535e-07,
                 0.18605363, 0.1712231, 1.9271644, 0.050081957, 1.7518806, 0.094679274]),
    "detach_weights": ({"detach_weights": True}, [0.706930339, 0.48089397, 0.130757824, 2.49540234],
                       [2.8117962, 6.0480562e-07, 0.21990094, 0.18411919, 5.5413508, 1.7615535e-07,
                        0.18605363, 0.1712231, 0.15992287, 0.050081957, 0.091016345, 0.094679274]),
    "softmax": ({"am_score": "softmax"}, [0.706930339, 0.334039569, 0.130757824, 2.34854794],
                [2.8046496, 6.4082712e-07, 0.21813208, 0.18312258, 5.5131369, 2.9333557e-07,
                 0.18309872, 0.16132666, 1.9053783, 0.02896031, 1.7096946, 0.095203176]),
    "eval": ({"am_batchnorm": "eval"}, [0.706930339, 0.495778531, 0.130757824, 2.51028705],
             [2.8187006, 0.016884986, 0.22264694, 0.18384157, 5.5947785, 0.033346102,
              0.18616264, 0.16778673, 1.9202273, 0.070555165, 1.7193997, 0.09481512]),
}


def _full_step(**config):
    config = {"fill": "mean", **config}      # Eq. 3 exactly, as the records were made
    torch.manual_seed(0)
    model = GAIN(TinyNet(), "features", GainConfig(**config))
    batch = _batch()
    out = model.stream_losses(batch, ext_batch=batch)
    return out, _param_grads(model, out["total"])


@pytest.mark.parametrize("name", sorted(_RECORDED))
def test_defaults_compute_the_recorded_losses_and_gradients(name):
    config, losses, norms = _RECORDED[name]
    out, grads = _full_step(**config)
    got = [out[k].item() for k in ("cl", "am", "ext", "total")]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(losses), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.stack([g.norm() for g in grads]), torch.tensor(norms),
                               rtol=1e-5, atol=1e-6)


def test_mean_fill_and_default_normalisation_are_the_old_formulas_bit_for_bit(monkeypatch):
    # The code before the switches: Eq. 3 as I - T * I and A / max A per map.
    def old_masked_image(images, mask, *args, **kwargs):
        images = images.unsqueeze(1)
        return images - mask.unsqueeze(2) * images

    def old_normalize(maps, normalization="max", *args, **kwargs):
        return maps / maps.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-8)

    out, grads = _full_step()
    monkeypatch.setattr(gainlib.gain, "masked_image", old_masked_image)
    monkeypatch.setattr(gainlib.attention, "normalize_maps", old_normalize)
    old, old_grads = _full_step()
    assert all(torch.equal(out[k], old[k]) for k in old)
    assert all(torch.equal(a, b) for a, b in zip(grads, old_grads))


def test_defaults_spelled_out_are_the_defaults():
    spelled = dict(normalization="max", detach_normalizer=False, am_score="sigmoid", fill="blur",
                   detach_weights=False, am_batchnorm="batch")
    out, grads = _full_step(**spelled)
    ref, ref_grads = _full_step(fill=GainConfig().fill)
    assert all(torch.equal(out[k], ref[k]) for k in ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))


@pytest.mark.parametrize("switch", [
    {"fill": "zero"}, {"fill": "blur"}, {"fill": "noise"}, {"am_score": "max_softmax"},
    {"normalization": "batch_minmax"},
])
def test_each_new_switch_changes_attention_mining(switch):
    # Only L_am (and the total) may move: S_cl and S_e do not see the masked images.
    out, _ = _full_step(**switch)
    ref, _ = _full_step()
    assert not torch.isclose(out["am"], ref["am"], rtol=1e-4), switch
    if "normalization" not in switch:    # the maps feed L_e too
        assert torch.equal(out["ext"], ref["ext"])
    assert torch.equal(out["cl"], ref["cl"])


def test_detached_normaliser_changes_the_gradient_not_the_loss():
    out, grads = _full_step(detach_normalizer=True)
    ref, ref_grads = _full_step()
    torch.testing.assert_close(out["total"], ref["total"])
    assert sum((a - b).abs().sum() for a, b in zip(grads, ref_grads)) > 1e-4


def test_noise_fill_follows_the_torch_rng():
    first, _ = _full_step(fill="noise")
    again, _ = _full_step(fill="noise")       # _full_step seeds the RNG: the same draws
    assert torch.equal(first["am"], again["am"])


def test_config_checks_the_new_fields():
    with pytest.raises(ValueError, match="fill must be one of 'mean', 'zero', 'blur', 'noise'"):
        GainConfig(fill="grey")
    with pytest.raises(ValueError, match="am_score"):
        GainConfig(am_score="max")
    with pytest.raises(TypeError, match="image_mean must be 3 numbers"):
        GainConfig(image_mean=(0.5, 0.5))
    with pytest.raises(TypeError, match="image_std must be a number"):
        GainConfig(image_std=(0.2, "0.2", 0.2))
    with pytest.raises(ValueError, match="image_std must be positive"):
        GainConfig(image_std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="blur_sigma must be positive"):
        GainConfig(blur_sigma=0.0)
    with pytest.raises(TypeError, match="detach_normalizer must be True or False"):
        GainConfig(detach_normalizer=1)
    # Lists (a config read back from JSON) become tuples, so the config compares equal.
    assert GainConfig(image_mean=[0.5, 0.5, 0.5]) == GainConfig(image_mean=(0.5, 0.5, 0.5))
