"""Embedding with a trained model, without Kedro: the latents of every cell (``cells``)
or of every paired sample with both platforms imputed in original units (``paired``),
the tables people take out of Python, and the records of what made them."""
