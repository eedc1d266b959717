"""The engine as a ``Generate`` function for ``evaluate.adherence`` (default settings)."""

from __future__ import annotations

import numpy as np

from brushwork.engine.api import Studio
from brushwork.engine.params import GenerationParams


def engine_generate(model: str | None, studio: Studio | None = None, **overrides):
    studio = studio or Studio()
    loaded = studio.model(model)

    def gen(bp, seed: int, n: int) -> list[np.ndarray]:
        params = GenerationParams.build(prompt=bp.prompt, seed=seed, n=n, model=model, **overrides)
        return [np.asarray(im) for im in studio.generate(params).images]

    return gen, loaded.name
