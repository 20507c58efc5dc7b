"""Evaluation as a library (no Kedro): how well an embedding removes batch effects and
keeps biology, where its latent dimensions put batch and cell type, which cells look
anomalous, and how well the joint VAE imputes one platform from the other.

Single-cell embeddings, all on ``evaluation_cells`` (``cells``: its layout and keys):

- ``preparation.prepare_evaluation_cells``: the evaluated cells, their latents and the
  baselines (``baselines``: unintegrated PCA, Harmony) in one AnnData.
- ``integration``: scib-metrics' benchmark, its table and its MLflow metrics.
- ``umaps.compute_umaps``, ``statistics.compute_latent_association``,
  ``anomalies.score_anomalies``.
- ``figures``: the heat table, the UMAP grid, the η² heat map, the anomaly UMAP.

Paired platforms: ``imputation`` (held-out predictions of the joint VAE and baselines,
their scores and metrics) and ``imputation_figures``.

Sweeps: ``comparison`` (each variant's scores, mean and spread over seeds per group,
seed-paired tests between groups, the figure).
"""
