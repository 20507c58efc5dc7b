"""Multi-phase training in the model library: real Lightning fits of a few epochs."""

from __future__ import annotations

import copy
import gc
import weakref
from dataclasses import asdict

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from omics_vae.models import InVAE
from omics_vae.models.phases import (
    PLAN_WIDTH,
    OptimizerSpec,
    Phase,
    PhasePlanError,
    PlanChangedError,
    Ramp,
    SchedulerSpec,
    TrainingPlan,
    Until,
    build_optimizer,
    check_plan,
    format_plan,
    kl_warmup,
    regroup_optimizer_state,
)
from omics_vae.models.trainer import FitSettings, fit

ALL_PARTS = ("encoder", "decoder", "dispersion", "prior_bio", "prior_tech")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def new_model(adata) -> InVAE:
    L.seed_everything(0, verbose=False)
    return InVAE.from_anndata(
        adata, {"bio_keys": ["cell_type"], "tech_keys": ["batch"], "n_hidden": 16}
    )


def phase(name, until, trainable=ALL_PARTS, lr=1e-3, **kwargs) -> Phase:
    return Phase(name, tuple(trainable), OptimizerSpec("adam", {"lr": lr}), until, **kwargs)


def run(adata, plan, tmp_path, *, callbacks=(), model=None, **settings):
    model = model or new_model(adata)
    tensors = model.make_tensors(adata)
    fit_settings = FitSettings(
        batch_size=32,
        enable_progress_bar=False,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        plan=plan,
        **settings,
    )
    return fit(model, tensors.subset("train"), tensors.subset("val"), fit_settings, callbacks)


def test_frozen_parts_keep_their_weights_and_trainable_ones_change(adata, tmp_path):
    model = new_model(adata)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = TrainingPlan((phase("decoder_only", Until(epochs=2), trainable=["decoder"]),))

    run(adata, plan, tmp_path, model=model)

    after = model.state_dict()
    for name, value in before.items():
        unchanged = torch.equal(value, after[name])
        if name.startswith("module.decoder."):
            if value.is_floating_point() and "running" not in name:
                assert not unchanged, f"{name} did not train"
        else:
            # Batch-norm statistics included: frozen parts stay in eval mode.
            assert unchanged, f"{name} of a frozen part changed"


def test_each_transition_criterion_ends_its_phase(adata, tmp_path):
    plan = TrainingPlan(
        (
            phase("by_epochs", Until(epochs=2), loss={"kl_weight": Ramp(0.0, 0.0)}),
            phase("below", Until(metric="val/loss", below=1e9, max_epochs=3)),
            phase("above", Until(metric="val/loss", above=1e9, max_epochs=2)),
            phase("plateau", Until(metric="val/loss", patience=1, min_delta=1e9, max_epochs=5)),
        )
    )
    result = run(adata, plan, tmp_path)

    assert list(result.history["phase"]) == [0, 0, 1, 2, 2, 3, 3]
    assert list(result.history["kl_weight"][:2]) == [0.0, 0.0]
    assert [(t["phase"], t["start_epoch"], t["end_epoch"]) for t in result.phases] == [
        ("by_epochs", 0, 1),
        ("below", 2, 2),
        ("above", 3, 4),
        ("plateau", 5, 6),
    ]
    reasons = [t["reason"] for t in result.phases]
    assert reasons[0] == "2 epochs done"
    assert "below 1e+09" in reasons[1]
    assert reasons[2] == "max_epochs 2 reached"
    assert "plateaued" in reasons[3]
    assert result.epochs == 7


def test_loss_weight_ramps_linearly_across_the_phase(adata, tmp_path):
    plan = TrainingPlan((phase("ramp", Until(epochs=3), loss={"kl_weight": Ramp(0.0, 1.0)}),))
    result = run(adata, plan, tmp_path)
    np.testing.assert_allclose(result.history["kl_weight"], [0.0, 0.5, 1.0])


@pytest.mark.parametrize(("beta_max", "warmup"), [(1.0, 10), (2.5, 3), (0.3, 7), (1.0, 1)])
def test_the_kl_warm_up_ramp_equals_the_former_model_schedule(beta_max, warmup):
    # The formula BaseVAE.kl_weight applied before the warm-up became a ramp of the plan.
    ramp = kl_warmup(InVAE.probe(beta_max=beta_max, kl_warmup_epochs=warmup))
    for epoch in range(3 * warmup):
        assert ramp.value(epoch, None) == beta_max * min(1.0, epoch / warmup)
    assert ramp.clock == "run"
    assert kl_warmup(InVAE.probe(beta_max=0.4, kl_warmup_epochs=0)) == Ramp(0.4, 0.4)


def test_a_phase_without_a_kl_weight_continues_the_run_s_warm_up(adata, tmp_path):
    model = InVAE.from_anndata(
        adata, {"n_hidden": 16, "beta_max": 2.0, "kl_warmup_epochs": 4}, tech_keys=["batch"]
    )
    plan = TrainingPlan(
        (
            phase("fixed", Until(epochs=2), loss={"kl_weight": Ramp(0.1, 0.1)}),
            phase("own", Until(epochs=5)),
        )
    )
    result = run(adata, plan, tmp_path, model=model)
    np.testing.assert_allclose(
        result.history["kl_weight"], [0.1, 0.1, 1.0, 1.5, 2.0, 2.0, 2.0], rtol=1e-7
    )
    assert model.kl_weight == 2.0  # outside training: the model's own beta_max


def test_the_schedule_restarts_with_each_phase(adata, tmp_path):
    warmup = SchedulerSpec("linear_warmup", {"warmup": 2, "start_factor": 0.5})
    plan = TrainingPlan(
        (
            phase("first", Until(epochs=3), lr=1e-3, scheduler=warmup),
            phase("second", Until(epochs=3), lr=1e-2, scheduler=warmup),
        )
    )
    result = run(adata, plan, tmp_path)
    np.testing.assert_allclose(
        result.history["lr"], [5e-4, 7.5e-4, 1e-3, 5e-3, 7.5e-3, 1e-2], rtol=1e-6
    )


class StopAtEpoch(Callback):
    """Interrupts training at the start of an epoch, after the previous one's checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyError("interrupted")


def resumable_plan(decoder_lr: float = 1e-4) -> TrainingPlan:
    return TrainingPlan(
        (
            phase("warmup", Until(epochs=2), loss={"kl_weight": Ramp(0.0, 0.0)}),
            phase(
                "full",
                Until(epochs=4),
                scheduler=SchedulerSpec("cosine"),
                loss={"kl_weight": Ramp(0.2, 1.0)},
            ),
            phase("decoder", Until(epochs=2), trainable=["decoder"], lr=decoder_lr),
        )
    )


def interrupt_in_second_phase(adata, tmp_path):
    # Epoch 4 is the third epoch of "full": the checkpoint holds its Adam and cosine state.
    with pytest.raises(KeyError, match="interrupted"):
        run(adata, resumable_plan(), tmp_path / "resumed", callbacks=[StopAtEpoch(4)])


def test_resuming_in_the_second_phase_matches_an_uninterrupted_run(adata, tmp_path):
    uninterrupted = run(adata, resumable_plan(), tmp_path / "uninterrupted")
    interrupt_in_second_phase(adata, tmp_path)

    resumed = run(adata, resumable_plan(), tmp_path / "resumed", resume_from="last")

    assert resumed.resumed_from is not None
    assert resumed.phases == uninterrupted.phases
    assert list(resumed.history["phase"]) == [0, 0, 1, 1, 1, 1, 2, 2]
    np.testing.assert_allclose(
        resumed.history["val/loss"], uninterrupted.history["val/loss"], rtol=1e-5
    )
    np.testing.assert_allclose(resumed.history["lr"], uninterrupted.history["lr"], rtol=1e-6)
    for (name, a), b in zip(
        uninterrupted.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpoints_carry_the_plan_and_the_phase(adata, tmp_path):
    interrupt_in_second_phase(adata, tmp_path)
    (checkpoint_path,) = (tmp_path / "resumed" / "checkpoints").glob("*/last.ckpt")
    checkpoint = torch.load(checkpoint_path, weights_only=False)

    state = checkpoint["callbacks"]["PhaseController"]
    # The plan as run: the decoder phase, which sets no KL weight, has the KL warm-up.
    warmed_up = resumable_plan().to_dict()
    warmed_up["phases"][2]["loss"] = {"kl_weight": asdict(kl_warmup(new_model(adata)))}
    assert state["plan"] == warmed_up
    assert (state["phase_index"], state["phase_name"]) == (1, "full")
    assert (state["phase_start_epoch"], state["epoch_in_phase"]) == (2, 1)
    assert state["global_step"] == checkpoint["global_step"] == 4 * 5
    assert state["scheduler"]["last_epoch"] == 2
    (optimizer_state,) = checkpoint["optimizer_states"]
    # Parts without their own settings share one parameter group.
    assert [group["name"] for group in optimizer_state["param_groups"]] == ["+".join(ALL_PARTS)]


def test_parts_share_a_parameter_group_unless_they_have_their_own_settings():
    parameters = {name: [torch.nn.Parameter(torch.zeros(2))] for name in ALL_PARTS}
    other = [torch.nn.Parameter(torch.zeros(1))]
    spec = OptimizerSpec("adam", {"lr": 1e-3}, parts={"encoder": {"lr": 1e-4}})
    optimizer = build_optimizer(spec, parameters, ("encoder", "decoder", "dispersion"), other)
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert set(groups) == {"encoder", "decoder+dispersion+other"}
    assert groups["encoder"]["lr"] == 1e-4
    assert groups["decoder+dispersion+other"]["lr"] == 1e-3
    assert groups["encoder"]["params"] == parameters["encoder"]
    assert groups["decoder+dispersion+other"]["params"] == [
        *parameters["decoder"],
        *parameters["dispersion"],
        *other,
    ]


def test_an_optimiser_state_saved_with_a_group_per_part_continues_in_shared_groups():
    generator = torch.Generator().manual_seed(0)
    names = ("encoder", "decoder", "dispersion")

    def parameters() -> dict[str, list[torch.nn.Parameter]]:
        generator.manual_seed(0)
        return {n: [torch.nn.Parameter(torch.randn(3, generator=generator))] for n in names}

    def step(optimizer: torch.optim.Optimizer, seed: int) -> None:
        generator.manual_seed(seed)
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = torch.randn(parameter.shape, generator=generator)
        optimizer.step()

    old_parameters, new_parameters = parameters(), parameters()
    # How checkpoints were written before: one group per part.
    old = torch.optim.Adam(
        [{"params": old_parameters[n], "name": n} for n in names], lr=0.1, fused=True
    )
    step(old, 1)
    new = build_optimizer(OptimizerSpec("adam", {"lr": 0.1}), new_parameters, names)
    for n in names:
        new_parameters[n][0].data.copy_(old_parameters[n][0].data)
    saved = copy.deepcopy(old.state_dict())  # as read from a checkpoint: no shared moments
    new.load_state_dict(regroup_optimizer_state(saved, [g["name"] for g in new.param_groups]))
    step(old, 2)
    step(new, 2)
    for n in names:
        torch.testing.assert_close(new_parameters[n][0], old_parameters[n][0], rtol=0, atol=0)


def test_resuming_with_a_changed_plan_is_refused_unless_forced(adata, tmp_path):
    interrupt_in_second_phase(adata, tmp_path)
    changed = resumable_plan(decoder_lr=1e-3)

    with pytest.raises(PlanChangedError, match=r"phases\[2\] \(decoder\): optimizer"):
        run(adata, changed, tmp_path / "resumed", resume_from="last")

    forced = run(adata, changed, tmp_path / "resumed", resume_from="last", force_plan_change=True)
    assert list(forced.history["phase"]) == [0, 0, 1, 1, 1, 1, 2, 2]


def test_a_finished_phase_releases_its_optimiser(adata, tmp_path):
    class WatchOptimisers(Callback):
        def __init__(self) -> None:
            self.first: weakref.ref | None = None
            self.alive_in_second_phase: bool | None = None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 0:
                self.first = weakref.ref(trainer.optimizers[0])
            if trainer.current_epoch == 1:
                gc.collect()
                self.alive_in_second_phase = self.first() is not None

    watch = WatchOptimisers()
    plan = TrainingPlan((phase("a", Until(epochs=1)), phase("b", Until(epochs=1))))
    run(adata, plan, tmp_path, callbacks=[watch])
    assert watch.alive_in_second_phase is False


@pytest.mark.parametrize(
    ("bad_phase", "message"),
    [
        (phase("p", Until(epochs=1), trainable=["decodr"]), r"\(p\)\.trainable: unknown part"),
        (
            Phase("p", ALL_PARTS, OptimizerSpec("adamax", {}), Until(epochs=1)),
            r"\(p\)\.optimizer\.name: unknown optimizer 'adamax'",
        ),
        (
            Phase("p", ALL_PARTS, OptimizerSpec("adam", {"lr": -1.0}), Until(epochs=1)),
            r"\(p\)\.optimizer: Invalid learning rate",
        ),
        (
            phase("p", Until(epochs=1), scheduler=SchedulerSpec("exponential")),
            r"\(p\)\.scheduler\.name: unknown scheduler",
        ),
        (
            phase("p", Until(metric="val/accuracy", below=1.0)),
            r"\(p\)\.until\.metric: 'val/accuracy' is never logged",
        ),
        (phase("p", Until(epochs=1), loss={"gamma": Ramp(1, 1)}), r"\(p\)\.loss: unknown"),
    ],
)
def test_plans_that_cannot_run_are_refused_naming_phase_and_field(adata, bad_phase, message):
    plan = TrainingPlan((phase("ok", Until(epochs=1)), bad_phase))
    with pytest.raises(PhasePlanError, match=r"phases\[1\] " + message):
        check_plan(plan, new_model(adata))


def test_a_phase_with_no_parameters_to_train_is_refused(adata):
    # Without biological covariates the bio prior is a fixed N(0, I): nothing to train.
    model = InVAE.from_anndata(adata, {"tech_keys": ["batch"], "n_hidden": 16})
    plan = TrainingPlan((phase("priors", Until(epochs=1), trainable=["prior_bio"]),))
    with pytest.raises(PhasePlanError, match=r"phases\[0\] \(priors\)\.trainable: .* no param"):
        check_plan(plan, model)


def test_the_plan_prints_one_block_per_phase_within_100_columns():
    plan = resumable_plan()
    lines = format_plan(plan).splitlines()
    titles = [line for line in lines if not line.startswith(" ")]

    assert [title.split(" | ")[:2] for title in titles] == [
        [str(i), phase.name] for i, phase in enumerate(plan.phases)
    ]
    assert len(lines) == 4 * len(plan.phases)
    assert max(map(len, lines)) <= PLAN_WIDTH
    assert any("kl_weight=0.2→1" in line for line in lines[4:8])
    assert any("adam(lr=0.0001)" in line for line in lines[8:])
