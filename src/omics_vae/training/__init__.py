"""Training as a library (no Kedro): fit a registered model on its data with a plan of
phases, the training identity that decides whether a model can be reused or resumed, and
what a run reports (model card, metric histories, loss curves).

- ``single_cell.train_model`` / ``paired.train_joint_model``: build the model for the data
  and fit it (``fitting.fit_model``, on ``models.trainer.fit``).
- ``identity.training_identity`` / ``fingerprint_of``: what decides a trained model.
- ``reports``: ``model_card``, ``history_to_metrics``, ``plot_loss_curves``.
"""
