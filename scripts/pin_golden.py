"""Pin a 4x4 pixel patch of the bundled model's output for tests/engine/test_default_model.py.

Also records the adherence smoke score the tests hold the weights to (and the floor test expects to
fail while it is below the floor). Run only when the bundled weights (or the engine's numerics)
change on purpose, and say so in the commit message. Tolerance: mean absolute difference <= 2 of 255.
"""

import json
from pathlib import Path

import numpy as np

from brushwork.engine.api import Studio
from brushwork.engine.bench import engine_generate
from brushwork.engine.params import GenerationParams
from brushwork.evaluate.adherence import smoke_accuracy
from brushwork.evaluate.prompt_sets import load_prompts

PROMPT, SEED = "a red circle above a blue square", 0


def main():
    studio = Studio()
    img = np.asarray(studio.generate(GenerationParams.build(prompt=PROMPT, seed=SEED)).images[0]).astype(int)
    # the most varied 4x4 patch, so that the pin covers an edge rather than flat background
    h, w = img.shape[:2]
    best = max(((y, x) for y in range(0, h - 4, 2) for x in range(0, w - 4, 2)),
               key=lambda yx: img[yx[0]:yx[0] + 4, yx[1]:yx[1] + 4].std())
    y, x = best
    out = Path(__file__).resolve().parents[1] / "tests" / "engine" / "golden_default_model.json"
    smoke = smoke_accuracy(engine_generate(None, studio)[0], load_prompts())
    out.write_text(json.dumps({"prompt": PROMPT, "seed": SEED, "at": [y, x], "tolerance": 2.0,
                               "pixels": img[y:y + 4, x:x + 4].tolist(), "smoke_accuracy": smoke}) + "\n")
    print(out)
    print(f"adherence smoke: {smoke:.2f}")


if __name__ == "__main__":
    main()
