# tiefwatch — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CATALOG ?= ../shared/data/watch-catalog-dev

.PHONY: demo test lint venv bench bench-adapted bench-crop bench-judged bench-scale crop-model similarity-model clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch and torchvision are pinned together: on this machine pip takes both from local disk.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,onnx]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tiefwatch demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Retrieval benchmark on the shared dev catalogue; writes docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python tools/bench_retrieval.py --catalog $(CATALOG) --ablations \
		--title "Retrieval on the dev catalogue, fresh workspace (packaged crop and similarity models)"

# The crop model that ships with the package: trained on the built-in drawn watches and sample backgrounds only,
# so anyone can rebuild it bit-for-bit from this repository (about 10 minutes on 2 CPU cores).
crop-model: $(STAMP)
	$(BIN)/tiefwatch --workspace .tiefwatch/build-crop-default train-bbox --out bbox/weights/crop_default.pt

# The pipeline adapted to the dev catalogue (its stable held-out 20 % never trained on): crop model, index,
# photo-invariance re-ranker, then the retrieval benchmark on the held-out watches (about 25 minutes).
ADAPTED := .tiefwatch/bench-adapted
bench-adapted: $(STAMP)
	$(BIN)/tiefwatch --workspace $(ADAPTED) train-bbox $(CATALOG) --holdout 0.2 --samples 32000
	$(BIN)/tiefwatch --workspace $(ADAPTED) index $(CATALOG)
	$(BIN)/tiefwatch --workspace $(ADAPTED) train --holdout 0.2 --views 2
	$(BIN)/python tools/bench_retrieval.py --catalog $(CATALOG) --workspace $(ADAPTED) \
		--section retrieval-adapted --sheet docs/images/bench_adapted_sheet.jpg \
		--title "Retrieval, pipeline adapted to the dev catalogue (crop model + photo-invariance re-ranker)" \
		--note "Workspace prepared by \`make bench-adapted\`: train-bbox --holdout 0.2 --samples 32000, index, train --holdout 0.2 --views 2."

# Crop boxes on photo-like scenes of held-out watches: the packaged model beside the one bench-adapted trained.
bench-crop: $(STAMP)
	$(BIN)/python tools/bench_crop.py --catalog $(CATALOG) --model bbox/weights/crop_default.pt \
		--model $(ADAPTED)/models/crop.pt --sheet docs/images/crop_worst.jpg \
		--note "crop_default.pt: the packaged model (make crop-model). crop.pt: make bench-adapted (train-bbox --holdout 0.2 --samples 32000)."

# The similarity model that ships with the package, learned from the human-judged set in benchmarks/judged:
# judged triplets + triplets derived from labelled attributes, each anchor also as 2 photo-like shots. Anchors
# in the retrieval benchmark's held-out fifth of the dev catalogue are left out, so its query watches are never shot.
JUDGED := .tiefwatch/build-similarity-default
similarity-model: $(STAMP)
	$(BIN)/python tools/judged_set.py training-csv benchmarks/judged --holdout 0.2 --out $(JUDGED)/judged-all.csv
	$(BIN)/tiefwatch --workspace $(JUDGED) index $(CATALOG)
	$(BIN)/tiefwatch --workspace $(JUDGED) train-triplets $(JUDGED)/judged-all.csv --views 2 \
		--out ranking/weights/similarity_default.pt

# Generalisation of human judgements: train on half A of the judged set, measure on the unseen half B.
bench-judged: $(STAMP)
	$(BIN)/python tools/bench_judged.py --catalog $(CATALOG) --workspace $(JUDGED) --doc docs/benchmarks.md

# FAISS from 1 k to 1 M vectors grown from the dev catalogue's embeddings (about 20 minutes, ~12 GB of memory).
bench-scale: $(STAMP)
	$(BIN)/tiefwatch --workspace $(JUDGED) index $(CATALOG)
	$(BIN)/python tools/bench_scale.py --index $(JUDGED)/index/catalog.npz --doc docs/benchmarks.md \
		--plot docs/images/scale.png

clean:
	rm -rf $(VENV) .tiefwatch .pytest_cache .ruff_cache *.egg-info
