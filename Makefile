# brushwork: every target sets itself up from nothing (a fresh clone, no virtual environment).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= a red circle above a blue square

.PHONY: demo test setup clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (brushwork needs Python 3.11)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(BIN)/.installed

# generate with the bundled model, then judge the image: the verdict is printed, and a failed one does not fail the demo
demo: setup
	@mkdir -p outputs/demo
	HF_HUB_OFFLINE=1 $(BIN)/brushwork generate "$(PROMPT)" --seed 1 --out outputs/demo > outputs/demo/last.txt
	@cat outputs/demo/last.txt
	HF_HUB_OFFLINE=1 $(BIN)/brushwork judge "$$(cat outputs/demo/last.txt)" --prompt "$(PROMPT)" \
		--annotate outputs/demo/judged.png; test $$? -le 1

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs
