"""Resume continues only the training that this run names: same data, labels, parameters
and seed; every checkpoint it reads is loaded tensors-only."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import lightning as L
import pytest
import torch

import omics_vae.models.trainer as trainer_module
from omics_vae.models.trainer import ResumeError
from omics_vae.training.single_cell import train_model
from tests.printed_fixes import apply, printed_settings
from tests.tiny_training import assert_resumed_like_uninterrupted


class StopAtEpoch(L.Callback):
    """Kills a fit at the start of an epoch, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"killed at epoch {self.epoch}")


@pytest.fixture
def interrupt_at(monkeypatch):
    """Makes the next fits stop with an error at the start of ``epoch``."""

    def interrupt(epoch: int) -> None:
        build = trainer_module._build_trainer

        def build_with_a_kill(settings, run_dir, history, controller=None, extra=()):
            return build(settings, run_dir, history, controller, (*extra, StopAtEpoch(epoch)))

        monkeypatch.setattr(trainer_module, "_build_trainer", build_with_a_kill)

    return interrupt


def _with(params: dict, **changes) -> dict:
    params = copy.deepcopy(params)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        block = params
        for part in parents:
            block = block[part]
        block[leaf] = value
    return params


def _last_checkpoints(params: dict) -> list[Path]:
    return sorted(Path(params["checkpoint_dir"]).glob("*/*/last.ckpt"))


def test_resume_from_last_matches_an_uninterrupted_run(
    model_input, training_params, interrupt_at, monkeypatch
):
    params = _with(training_params, trainer__max_epochs=4)
    uninterrupted, full_history, _ = train_model(model_input, params)
    # A second, interrupted run of the same training: its last.ckpt is from epoch 2.
    interrupt_at(2)
    with pytest.raises(RuntimeError, match="killed at epoch 2"):
        train_model(model_input, params)
    monkeypatch.undo()
    interrupted_run = _last_checkpoints(params)[-1].parent

    resumed, resumed_history, summary = train_model(model_input, _with(params, resume_from="last"))

    assert Path(summary["resumed_from"]).parent == interrupted_run
    assert list(resumed_history["epoch"]) == [0, 1, 2, 3]
    # The epoch of the checkpoint keeps its train/* metrics, logged after the save.
    assert_resumed_like_uninterrupted(resumed, resumed_history, uninterrupted, full_history)


def test_a_run_killed_before_its_first_checkpoint_cannot_resume_another_seed(
    model_input, training_params, interrupt_at
):
    train_model(model_input, _with(training_params, seed=0))  # finished, with a last.ckpt
    seed_1 = _with(training_params, seed=1)
    interrupt_at(0)
    with pytest.raises(RuntimeError, match="killed at epoch 0"):
        train_model(model_input, seed_1)

    with pytest.raises(ResumeError) as refused:
        train_model(model_input, _with(seed_1, resume_from="last"))
    message = str(refused.value)
    assert "training.seed: 0 in the checkpoint, 1 now" in message
    assert "resume_from: null" in message
    # The refusal lists the run it would not continue.
    assert _last_checkpoints(training_params)[0].parent.name in message


def test_relabelled_cells_cannot_resume_the_run_of_the_old_labels(model_input, training_params):
    train_model(model_input, training_params)
    relabelled = model_input.copy()
    relabelled.obs["cell_type"] = relabelled.obs["cell_type"].sample(frac=1, random_state=0).values

    with pytest.raises(ResumeError, match=r"covariates\.cell_type"):
        train_model(relabelled, _with(training_params, resume_from="last"))


def test_an_explicit_checkpoint_of_other_parameters_is_refused(model_input, training_params):
    train_model(model_input, training_params)
    checkpoint = _last_checkpoints(training_params)[0]
    other = _with(training_params, resume_from=str(checkpoint))
    other["hyperparameters"]["invae"]["n_latent_bio"] = 7

    with pytest.raises(
        ResumeError, match=re.escape("hyperparameters.invae.n_latent_bio: 30 in the checkpoint")
    ):
        train_model(model_input, other)


def test_the_newest_matching_run_is_resumed_not_the_newest_run(
    model_input, training_params, interrupt_at, monkeypatch
):
    interrupt_at(2)
    with pytest.raises(RuntimeError):
        train_model(model_input, _with(training_params, trainer__max_epochs=4, seed=0))
    matching_run = _last_checkpoints(training_params)[0].parent
    with pytest.raises(RuntimeError):
        train_model(model_input, _with(training_params, trainer__max_epochs=4, seed=1))
    monkeypatch.undo()

    _, _, summary = train_model(
        model_input, _with(training_params, trainer__max_epochs=4, seed=0, resume_from="last")
    )

    assert Path(summary["resumed_from"]).parent == matching_run


class WritesAFileWhenUnpickled:
    """A pickle payload: unpickling it creates ``marker`` (code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_bearing_last_checkpoint_is_refused_even_when_torch_is_told_to_unpickle(
    model_input, training_params, tmp_path, monkeypatch
):
    train_model(model_input, training_params)
    checkpoint = _last_checkpoints(training_params)[0]
    marker = tmp_path / "payload-ran"
    content = torch.load(checkpoint, weights_only=True)
    content["payload"] = WritesAFileWhenUnpickled(marker)
    torch.save(content, checkpoint)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    with pytest.raises(ResumeError, match="never unpickled"):
        train_model(model_input, _with(training_params, resume_from="last"))
    with pytest.raises(ResumeError) as refused:
        train_model(model_input, _with(training_params, resume_from=str(checkpoint)))
    assert not marker.exists()
    message = str(refused.value)
    # The project's words, not torch's advice to load it with weights_only=False.
    assert f"training.resume_from: checkpoint '{checkpoint}' cannot be resumed" in message
    assert "it holds a pickled Python object (io.open); checkpoints are read as tensors" in (
        message
    )
    assert "weights_only" not in message
    assert "training.resume_from: null in conf/local/parameters_training.yml" in message

    # The test can fail: a load that leaves weights_only out runs the payload here.
    torch.load(checkpoint)
    assert marker.exists()


def test_resume_without_a_previous_run_names_the_fix(model_input, training_params):
    with pytest.raises(ResumeError, match="resume_from: null"):
        train_model(model_input, _with(training_params, resume_from="last"))


@pytest.mark.parametrize("kept", [0, 100, 0.5])
def test_a_truncated_checkpoint_names_the_file_and_the_fix_that_works(
    model_input, training_params, kept
):
    """An interrupted save leaves a truncated file: torch answered 'OSError: [Errno 22]
    Invalid argument' (mmap of an empty file) or a zip-archive error."""
    train_model(model_input, training_params)
    checkpoint = _last_checkpoints(training_params)[0]
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: int(kept * len(content)) if kept < 1 else kept])

    with pytest.raises(ResumeError) as refused:
        train_model(model_input, _with(training_params, resume_from=str(checkpoint)))

    message = str(refused.value)
    assert (
        f"checkpoint '{checkpoint}' cannot be resumed: the file is corrupt or truncated" in message
    )
    assert "Errno" not in message
    assert f"Delete the file (rm '{checkpoint}')" in message
    settings = printed_settings(message)
    assert settings == {"training.resume_from": None}
    # Either fix works: training afresh, or (once the file is deleted) resuming another.
    fixed = apply(settings, {"training": training_params})["training"]
    assert train_model(model_input, fixed)[2]["resumed_from"] is None


def test_resume_from_last_lists_an_unreadable_checkpoint_apart(model_input, training_params):
    train_model(model_input, training_params)
    checkpoint = _last_checkpoints(training_params)[0]
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])

    with pytest.raises(ResumeError) as refused:
        train_model(model_input, _with(training_params, resume_from="last"))

    message = str(refused.value)
    assert "these checkpoints cannot be read (delete them" in message
    assert f"{checkpoint}: the file is corrupt or truncated" in message
    assert "other data or with other parameters" not in message
    assert "set training.resume_from: null in conf/local/parameters_training.yml" in message
