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

demo: setup
	@mkdir -p outputs
	HF_HUB_OFFLINE=1 $(BIN)/brushwork render "$(PROMPT)" --out outputs/demo.png --seed 1
	HF_HUB_OFFLINE=1 $(BIN)/brushwork judge outputs/demo.png --prompt "$(PROMPT)" --annotate outputs/demo.judged.png

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs
