"""omics-vae: latent-variable models of omics data, trained and benchmarked with Kedro."""

__version__ = "0.1.0"
