"""The trainer: modes, history, checkpoints, exact resume, NaN stop, DDP on CPU."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny import TinyNet, TinyScenes
from torch.utils.data import Dataset

from gainlib.gain import GAIN
from gainlib.trainer import GainTrainer, NonFiniteLossError, TrainConfig, evaluate

TESTS = Path(__file__).parent


def _model(seed=0):
    torch.manual_seed(seed)
    return GAIN(TinyNet(), "features")


def _config(tmp_path=None, **kw):
    base = dict(epochs=2, batch_size=8, ext_batch_size=4, lr=0.05, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(checkpoint_dir=str(tmp_path) if tmp_path else None, **base)


class Interrupting(Dataset):
    """Raises KeyboardInterrupt (like Ctrl-C) on the n-th sample read or, with ``poison`` (a
    weight of the model), fills that weight with NaN there, so that the loss is NaN (the
    batching refuses NaN images and images so bright that the forward pass overflows)."""

    def __init__(self, inner, after, poison=None):
        self.inner, self.after, self.poison, self.reads = inner, after, poison, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.after:
            if self.poison is None:
                raise KeyboardInterrupt
            with torch.no_grad():
                self.poison.fill_(float("nan"))
        return self.inner[i]

    def extra_label_indices(self):
        return [i for i, s in enumerate(self.inner.samples) if s["use_mask"] or s["use_boxes"]]


@pytest.mark.parametrize("mode", ["classifier", "gain", "gain_ext"])
def test_every_mode_trains_and_reports_history(mode, tmp_path):
    train = TinyScenes(n=32, pixel=(0, 1), box=(2, 3))
    val = TinyScenes(n=16, seed=1)
    history = GainTrainer(_model(), _config(tmp_path, mode=mode, warmup_epochs=1)).fit(train, val)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["attention_losses_on"] is False
    assert history[1]["attention_losses_on"] is (mode != "classifier")
    expected_terms = {"classifier": set(), "gain": {"train_am"}, "gain_ext": {"train_am", "train_ext"}}
    assert expected_terms[mode] <= set(history[1]) and "train_am" not in history[0]
    for key in ("val_map", "val_accuracy", "val_attention_iou", "val_attention_coverage"):
        assert 0 <= history[1][key] <= 1
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == json.loads(json.dumps(history))
    assert (tmp_path / "last.pt").exists()


def test_training_learns_the_tiny_task():
    train, val = TinyScenes(n=64), TinyScenes(n=32, seed=1)
    before = evaluate(_model(), val, attention=False)
    model = _model()
    GainTrainer(model, _config(mode="classifier", epochs=4)).fit(train)
    after = evaluate(model, val, attention=False)
    assert after["loss"] < before["loss"] and after["map"] > before["map"]


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    data = TinyScenes(n=24, pixel=(0, 1), box=(2,))
    config = dict(mode="gain_ext", epochs=3)
    reference = _model()
    GainTrainer(reference, _config(tmp_path / "straight", **config)).fit(data)

    interrupted = _model()
    # 24 samples + the S_e draws per epoch: interrupt in the middle of the third epoch.
    with pytest.raises(KeyboardInterrupt):
        GainTrainer(interrupted, _config(tmp_path / "resumed", **config)).fit(
            Interrupting(data, after=2 * 40 + 10))
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["epoch"] < 2

    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    history = GainTrainer(resumed, _config(tmp_path / "resumed", **config)).fit(data)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_same_seed_same_weights_and_other_seed_differs():
    data = TinyScenes(n=16)
    runs = []
    for seed in (3, 3, 4):
        model = _model()
        GainTrainer(model, _config(mode="gain", epochs=1, seed=seed)).fit(data)
        runs.append(model.state_dict()["classifier.classifier.4.weight"])
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_eval_every_validates_only_the_chosen_epochs_and_the_last():
    data, val = TinyScenes(n=16), TinyScenes(n=8, seed=1)
    history = GainTrainer(_model(), _config(mode="gain", epochs=5, eval_every=2)).fit(data, val)
    assert [("val_map" in h) for h in history] == [False, True, False, True, True]
    assert "eval_every" not in _config(eval_every=3).run_settings()   # never changes the weights
    with pytest.raises(ValueError, match="eval_every"):
        _config(eval_every=0)


def test_channels_last_changes_only_float_rounding():
    data = TinyScenes(n=16, pixel=(0, 1), box=(2, 3))
    weights = []
    for channels_last in (False, True):
        model = _model()
        GainTrainer(model, _config(mode="gain_ext", epochs=1, channels_last=channels_last)).fit(data)
        conv = next(p for p in model.parameters() if p.ndim == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        weights.append(model.state_dict())
    for name, a in weights[0].items():
        assert torch.allclose(a.float(), weights[1][name].float(), atol=1e-5), name


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    data = Interrupting(TinyScenes(n=16), after=16 + 4,                 # NaN losses in epoch 2
                        poison=model.classifier.classifier[-1].weight)
    with pytest.raises(NonFiniteLossError, match="loss at epoch 2.*last good checkpoint is kept"):
        GainTrainer(model, _config(tmp_path, mode="gain", epochs=3)).fit(data)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_clear_errors_for_bad_set_ups(tmp_path):
    with pytest.raises(ValueError, match="use_mask or use_boxes"):
        GainTrainer(_model(), _config(mode="gain_ext")).fit(TinyScenes(n=8))
    with pytest.raises(ValueError, match="empty"):
        GainTrainer(_model(), _config()).fit(TinyScenes(n=0))
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="gain_ext_p")
    with pytest.raises(TypeError, match="GAIN"):
        GainTrainer(TinyNet(), _config())
    GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    with pytest.raises(ValueError, match="other settings.*lr"):
        GainTrainer(_model(), _config(tmp_path, epochs=1, lr=0.5)).fit(TinyScenes(n=8))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_gloo_on_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        import torch.distributed as dist
        from tiny import TinyNet, TinyScenes
        from gainlib.gain import GAIN
        from gainlib.trainer import GainTrainer, TrainConfig
        torch.manual_seed(0)
        model = GAIN(TinyNet(), "features")
        config = TrainConfig(mode="gain_ext", epochs=2, batch_size=4, ext_batch_size=2,
                             progress=False, checkpoint_dir=r"{tmp_path / 'ckpt'}")
        history = GainTrainer(model, config).fit(TinyScenes(n=16, pixel=(0, 1), box=(2, 3)))
        assert dist.get_world_size() == 2 and len(history) == 2
        torch.save(model.state_dict(), r"{tmp_path}" + f"/rank{{dist.get_rank()}}.pt")
        dist.destroy_process_group()
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         f"--master_port={_free_port()}", "--master_addr=127.0.0.1", str(script)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name   # DDP kept the replicas in sync
    torch.manual_seed(0)
    initial = GAIN(TinyNet(), "features").state_dict()
    assert not torch.equal(initial["classifier.features.0.weight"], rank0["classifier.features.0.weight"])
    assert (tmp_path / "ckpt" / "last.pt").exists()


@pytest.mark.parametrize("sampling", ["cycle", "natural"])
def test_s_e_sees_its_samples_cycled_or_at_their_natural_rate(sampling):
    data = TinyScenes(n=16, pixel=(1, 6))          # 2 of 16 samples have masks for S_e
    model = _model()
    seen = []
    original = model.stream_losses

    def spy(batch, ext_batch=None, **kwargs):
        if ext_batch is not None:
            seen.extend(ext_batch["id"])
            assert bool((ext_batch["use_mask"] | ext_batch["use_boxes"]).all())
        return original(batch, ext_batch, **kwargs)

    model.stream_losses = spy
    GainTrainer(model, _config(mode="gain_ext", epochs=1, ext_sampling=sampling)).fit(data)
    flagged = sorted(str(data[i]["id"]) for i in (1, 6))
    if sampling == "natural":                        # once per epoch, like any image
        assert sorted(seen) == flagged
    else:                                            # both in each of the 2 steps
        assert sorted(seen) == sorted(flagged * 2)
