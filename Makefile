# kandel_repro — every target installs what it needs into its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
KR     := $(BIN)/kandel-repro
STAMP  := $(VENV)/.installed

# Real data (Kaggle "Histopathologic Cancer Detection", unpacked) and run folders.
DATA ?= data/pcam
RUNS ?= runs
# Demo scale: synthetic PCam at 32×32, random weights, 3 epochs — fits 15 min on 2 CPU cores.
DEMO_DATA   ?= data/synthetic-demo
DEMO_RUNS   ?= runs/demo
DEMO_TRAIN  ?= 1500
DEMO_TEST   ?= 300
DEMO_SIZE   ?= 32
DEMO_EPOCHS ?= 3

.PHONY: install test demo table2 clean-demo help

help:
	@echo "make test    - install into $(VENV) and run the test suite"
	@echo "make demo    - Table 2 on synthetic data on a CPU (tables/demo/)"
	@echo "make table2  - Table 2 on the Kaggle data in DATA=$(DATA) (GPU recommended)"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid table2 --data $(DEMO_DATA) --runs $(DEMO_RUNS)/table2 --weights none --epochs $(DEMO_EPOCHS)
	$(KR) table table2 --runs $(DEMO_RUNS)/table2 --out tables/demo

table2: $(STAMP)
	$(KR) grid table2 --data $(DATA) --runs $(RUNS)/table2
	$(KR) table table2 --runs $(RUNS)/table2 --out tables

clean-demo:
	rm -rf $(DEMO_RUNS) $(DEMO_DATA)
