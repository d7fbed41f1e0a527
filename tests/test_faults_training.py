"""The trainer's faults: each test holds one item of the reliability issue and failed before.

Unsafe checkpoints, non-finite states that trained "successfully", corrupt checkpoints, config
values accepted until they failed deep inside (or silently did something else), and obscure
errors from evaluate() and the checkpoint writer.
"""

import math
import os
from pathlib import Path

import pytest
import torch
from tiny import TinyNet, TinyScenes
from torch.utils.data import Dataset

import gainlib.segmentation as seg
from gainlib.gain import GAIN
from gainlib.trainer import CheckpointError, GainTrainer, NonFiniteLossError, TrainConfig, evaluate


def _model(seed=0):
    torch.manual_seed(seed)
    return GAIN(TinyNet(), "features")


def _config(folder=None, **kw):
    base = dict(mode="classifier", epochs=2, batch_size=8, lr=0.05, progress=False, seed=3,
                eval_attention=False)
    base.update(kw)
    return TrainConfig(checkpoint_dir=str(folder) if folder else None, **base)


class Reads(Dataset):
    """Counts sample reads; after ``after`` reads, raises KeyboardInterrupt (like Ctrl-C) or, with
    ``weights``, multiplies that tensor by ``scale`` once (1e20 on the first convolution's
    weights makes a BatchNorm's running variance overflow to inf while the normalised output,
    hence the loss, stays finite; images that bright are refused by the batching)."""

    def __init__(self, inner, after=None, scale=None, weights=None):
        self.inner, self.after, self.scale, self.weights, self.reads = inner, after, scale, weights, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.reads += 1
        if self.after is not None and self.reads > self.after:
            if self.weights is None:
                raise KeyboardInterrupt
            if self.reads == self.after + 1:
                with torch.no_grad():
                    self.weights.mul_(self.scale)
        return self.inner[i]


def _all_finite(state):
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# -- checkpoints load safely -------------------------------------------------------------
class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):     # what unpickling with weights_only=False would run
        return (os.mkdir, (str(self.marker),))


def test_checkpoints_load_safely_a_planted_pickle_runs_nothing(tmp_path):
    folder, marker = tmp_path / "run", tmp_path / "pwned"
    folder.mkdir()
    torch.save({"epoch": 0, "model": _Planted(marker)}, folder / "last.pt")
    with pytest.raises(CheckpointError, match=f"{folder / 'last.pt'}.*resume=False"):
        GainTrainer(_model(), _config(folder)).fit(TinyScenes(n=8))
    assert not marker.exists()


def test_checkpoints_load_safely_the_trainers_own_load_with_weights_only(tmp_path):
    GainTrainer(_model(), _config(tmp_path / "gain", mode="gain_ext", epochs=1, lr_schedule="cosine",
                                  optimizer="adam")).fit(TinyScenes(n=8, pixel=(0,), box=(1,)), TinyScenes(n=4))
    data, network = TinyScenes(n=8), seg.SmallFCN(4, (4, 4, 4), upsample=False)
    cues = torch.zeros(8, 4, 8, 8, dtype=torch.bool)
    seg.SegmentationTrainer(network, seg.SegmentationConfig(
        epochs=1, batch_size=4, device="cpu", progress=False,
        checkpoint_dir=str(tmp_path / "seg"))).fit(data, cues=cues)
    for folder in ("gain", "seg"):
        state = torch.load(tmp_path / folder / "last.pt", weights_only=True)
        assert state["epoch"] == 0 and state["history"]


# -- non-finite guard --------------------------------------------------------------------
def test_non_finite_guard_checks_buffers_after_the_step_and_keeps_the_good_checkpoint(tmp_path):
    # In epoch 2 the first convolution responds 1e20 times too strongly: the loss stays finite
    # (BatchNorm normalises it away) but running_var becomes inf. Before, training ended
    # "successfully" with the inf in the model and in last.pt.
    model = _model()
    data = Reads(TinyScenes(n=8), after=8, scale=1e20, weights=model.classifier.features[0].weight)
    with pytest.raises(NonFiniteLossError, match=r"running_var.*epoch 2, step 1.*last good checkpoint "
                                                 rf"is kept at {tmp_path / 'last.pt'}"):
        GainTrainer(model, _config(tmp_path, epochs=3)).fit(data)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and _all_finite(state["model"])


def test_non_finite_guard_stops_the_lr_1e6_probe(tmp_path):
    # One step per epoch at lr 1e6: before, fit returned val losses [1e25, nan, nan] and
    # last.pt held running_var = inf.
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is kept|no checkpoint"):
        GainTrainer(_model(), _config(tmp_path, epochs=3, lr=1e6)).fit(TinyScenes(n=8), TinyScenes(n=8, seed=1))
    if (tmp_path / "last.pt").exists():
        state = torch.load(tmp_path / "last.pt", weights_only=True)
        assert _all_finite(state["model"])
        assert all(math.isfinite(h["val_loss"]) for h in state["history"])


def test_non_finite_guard_checks_the_validation_loss(tmp_path, monkeypatch):
    # Valid images cannot make TinyNet's logits overflow; the validation itself reports inf.
    monkeypatch.setattr("gainlib.trainer.evaluate", lambda *args, **kwargs: {"loss": math.inf})
    with pytest.raises(NonFiniteLossError, match="validation loss.*epoch 1"):
        GainTrainer(_model(), _config(tmp_path)).fit(TinyScenes(n=8), TinyScenes(n=4))
    assert not (tmp_path / "last.pt").exists()


# -- corrupt or truncated checkpoint -----------------------------------------------------
def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_corrupt_checkpoint_error_names_the_file_and_what_to_do(tmp_path):
    GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    _truncate(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'last.pt'}.*Delete it, or pass resume=False"):
        GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    (tmp_path / "last.pt").write_bytes(b"")                       # 0 bytes: EOFError before
    with pytest.raises(CheckpointError, match="last.pt"):
        GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    GainTrainer(_model(), _config(tmp_path, epochs=1, resume=False)).fit(TinyScenes(n=8))  # the way out


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    data = TinyScenes(n=8)                                        # one step, 8 reads per epoch
    straight = _model()
    GainTrainer(straight, _config(epochs=4)).fit(data)
    with pytest.raises(KeyboardInterrupt):                        # in epoch 3
        GainTrainer(_model(), _config(tmp_path, epochs=4)).fit(Reads(data, after=2 * 8 + 4))
    assert {p.name for p in tmp_path.glob("*.pt")} == {"last.pt", "previous.pt"}
    _truncate(tmp_path / "last.pt")
    with pytest.warns(RuntimeWarning, match="last.pt.*previous.pt"), pytest.raises(KeyboardInterrupt):
        GainTrainer(_model(seed=7), _config(tmp_path, epochs=4)).fit(Reads(data, after=8 + 4))
    # Epoch 2 was redone and saved; the truncated file did not displace the good previous.pt.
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(tmp_path / "previous.pt", weights_only=True)["epoch"] == 0
    resumed = _model(seed=7)
    history = GainTrainer(resumed, _config(tmp_path, epochs=4)).fit(data)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "previous.pt").exists()                # the completed run keeps last.pt


# -- TrainConfig validates every field ---------------------------------------------------
@pytest.mark.parametrize("fields, error, name", [
    (dict(grad_clip=-1.0), ValueError, "grad_clip"),              # gradient ascent
    (dict(grad_clip=0), ValueError, "grad_clip"),                 # frozen weights
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=-0.01), ValueError, "lr"),
    (dict(momentum=float("nan")), ValueError, "momentum"),
    (dict(momentum=-0.9), ValueError, "momentum"),
    (dict(weight_decay=-5e-4), ValueError, "weight_decay"),
    (dict(weight_decay=float("inf")), ValueError, "weight_decay"),
    (dict(epochs=2.5), TypeError, "epochs"),                      # TypeError deep in range() before
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(seed=True), TypeError, "seed"),
    (dict(num_workers=-1), ValueError, "num_workers"),
    (dict(optimizer="sgdd"), ValueError, "optimizer"),            # caught only in fit() before
    (dict(lr_schedule="step"), ValueError, "lr_schedule"),
    (dict(mode="gain", epochs=3, warmup_epochs=3), ValueError, "warmup_epochs"),  # a plain classifier
    (dict(mode="gain_ext", epochs=3, warmup_epochs=5), ValueError, "warmup_epochs"),
    (dict(device="gpu"), ValueError, "device"),
    (dict(device=0), TypeError, "device"),
    (dict(amp="yes"), TypeError, "amp"),
    (dict(checkpoint_dir=3), TypeError, "checkpoint_dir"),
])
def test_train_config_validates_every_field(fields, error, name):
    with pytest.raises(error, match=rf"TrainConfig\.{name}\b"):
        TrainConfig(**fields)


def test_train_config_accepts_the_edges():
    TrainConfig(lr=0.0, momentum=0.0, weight_decay=0, grad_clip=None, device="cuda:1")
    TrainConfig(mode="classifier", epochs=2, warmup_epochs=5)     # warm-up means nothing there
    assert TrainConfig(checkpoint_dir=Path("runs")).checkpoint_dir == "runs"


# -- obscure errors become clear ---------------------------------------------------------
def test_evaluate_on_an_empty_dataset_says_so():
    with pytest.raises(ValueError, match=r"evaluate\(\) needs at least one sample"):  # torch.cat failed
        evaluate(_model(), [])


def test_disk_full_while_checkpointing_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04" + bytes(60))
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=f"could not write {tmp_path / 'last.pt'}.*disk space"):
        GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()                # root ignores the mode bits
    except OSError:
        yield folder
    else:
        (folder / "probe").unlink()
        sysfs = Path("/sys/fs")                   # read-only even for root in a container
        try:
            (sysfs / "gain-probe").touch()
        except OSError:
            yield sysfs
        else:
            (sysfs / "gain-probe").unlink()
            pytest.skip("no folder here is read-only for this user")
    folder.chmod(0o755)


def test_read_only_checkpoint_dir_is_detected_before_the_first_epoch(read_only_dir):
    data = Reads(TinyScenes(n=8))
    with pytest.raises(CheckpointError, match=f"checkpoint_dir {read_only_dir} is not writable"):
        GainTrainer(_model(), _config(read_only_dir, epochs=1)).fit(data)
    assert data.reads == 0                        # before: a whole epoch trained, then the save failed


def test_temp_file_names_are_unique_per_process(tmp_path, monkeypatch):
    # A second process saves into the same folder while the first is between writing its
    # temporary file and renaming it (played here by nesting the second save in the first).
    # With one fixed name (last.tmp) the second rename took the first's file away.
    save, nested = torch.save, []

    def save_and_let_another_process_save(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        if not nested:
            nested.append(True)
            GainTrainer(_model(1), _config(tmp_path, epochs=1, resume=False)).fit(TinyScenes(n=8))

    monkeypatch.setattr(torch, "save", save_and_let_another_process_save)
    GainTrainer(_model(), _config(tmp_path, epochs=1)).fit(TinyScenes(n=8))
    assert nested and sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0
