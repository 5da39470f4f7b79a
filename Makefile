# tiefwatch — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CATALOG ?= ../shared/data/watch-catalog-dev

.PHONY: demo test lint venv bench bench-conditions bench-independent bench-runs bench-lamp-colour bench-adapted bench-crop bench-judged bench-scale bench-synthetic crop-model photo-backbone bench-tuned similarity-model bench-serve clean

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

# The crop model that ships with the package: scenes of the dev watches outside the held-out fifth, drawn from every
# photo condition (train_bbox.conditions: close-ups cut by the frame, far, tilted, glare, lamp light, wrists, 12 MP
# phones) on the sample backgrounds (49 minutes and 6 GB on 2 CPU cores shared with other work; 16 epochs).
crop-model: $(STAMP)
	$(BIN)/tiefwatch --workspace .tiefwatch/build-crop-default train-bbox $(CATALOG) --holdout 0.2 --samples 16000 \
		--out bbox/weights/crop_default.pt

# The pipeline across the ways people photograph a watch (bbox.conditions), 300 held-out queries a condition, in a
# fresh workspace with the packaged models; contact sheets in docs/images/conditions/ (about 30 minutes).
CONDITIONS := .tiefwatch/bench-conditions
bench-conditions: $(STAMP)
	$(BIN)/python tools/bench_conditions.py --catalog $(CATALOG) --workspace $(CONDITIONS) --queries 300

# The same pipeline on photos from a second simulator that nothing trains on (tools/independent_scenes.py): standard,
# close-up, far and harsh, 300 held-out queries each; contact sheets in docs/images/independent/ (about 15 minutes,
# plus indexing when the conditions benchmark's workspace is not there yet).
bench-independent: $(STAMP)
	$(BIN)/python tools/bench_independent.py --catalog $(CATALOG) --workspace $(CONDITIONS) --queries 300

# What each backbone run buys (query crop scales, catalogue views), in FAISS order on held-out condition queries:
# the dev catalogue indexed as built, without views and with views from every condition (about 30 minutes).
RUNS := .tiefwatch/bench-runs
VIEW_MIX := {standard: 0.3, close-up: 0.14, far: 0.14, tilt: 0.1, glare: 0.08, lamp: 0.08, wrist: 0.1, phone: 0.06}
bench-runs: $(STAMP)
	$(BIN)/tiefwatch --workspace $(RUNS)/as-built -q index $(CATALOG) --format json > /dev/null
	$(BIN)/tiefwatch --workspace $(RUNS)/no-views -q index $(CATALOG) --format json --set index.views=0 > /dev/null
	$(BIN)/tiefwatch --workspace $(RUNS)/condition-views -q index $(CATALOG) --format json \
		--set 'index.view_conditions=$(VIEW_MIX)' > /dev/null
	$(BIN)/python tools/bench_runs.py --workspace $(RUNS)/as-built --queries 150 \
		--compare 'no views (index.views: 0)=$(RUNS)/no-views' \
		--compare 'four views from every condition (index.view_conditions)=$(RUNS)/condition-views' \
		--compare 'eight views: both of the above=$(RUNS)/as-built+$(RUNS)/condition-views'

# Case colour of lamp-lit and shade-lit shots of the judged set's labelled watches, light correction off and on.
bench-lamp-colour: $(STAMP)
	$(BIN)/python tools/bench_lamp_colour.py --catalog $(CATALOG) --workspace $(CONDITIONS)

# The photo-tuned backbone that ships with the package (backbone.weights: photo), in four steps, all on the 2,381 dev
# watches outside the held-out fifth: (1) the last two stages of Lite2 tuned from ImageNet on 16 standard photo-like
# views of each (minutes on a GPU, which tools/tune_tail.py uses where torch sees it; hours on 2 CPU cores); (2) the
# last stage tuned on from (1) on 8 views of each from every photo condition (bbox.settings.TRAINING_MIX; 35-60
# minutes on 2 CPU cores, the trunk in ONNX Runtime); (3) the same on 8 new views; (4) on 8 new views again, the
# conditions the pipeline finds hardest (tilt, glare, lamp) drawn about twice as often (HARD_MIX).
PHOTO := .tiefwatch/build-photo-backbone
HARD_MIX := standard=0.22,close-up=0.08,far=0.1,tilt=0.16,glare=0.18,lamp=0.16,wrist=0.05,phone=0.05
photo-backbone: $(STAMP)
	$(BIN)/python tools/tune_tail.py --catalog $(CATALOG) --conditions standard --views 16 --epochs 10 \
		--batch-size 512 --lr 3e-4 --variants train:2 --half --out $(PHOTO)/standard
	$(BIN)/python tools/tune_tail.py --catalog $(CATALOG) --start $(PHOTO)/standard/tail_train_2.pt \
		--conditions mix --views 8 --epochs 4 --batch-size 256 --lr 1e-4 --variants train:1 --half --out $(PHOTO)/mix
	$(BIN)/python tools/tune_tail.py --catalog $(CATALOG) --start $(PHOTO)/mix/tail_train_1.pt --seed 202 \
		--conditions mix --views 8 --epochs 4 --batch-size 256 --lr 1e-4 --variants train:1 --half --out $(PHOTO)/mix2
	$(BIN)/python tools/tune_tail.py --catalog $(CATALOG) --start $(PHOTO)/mix2/tail_train_1.pt --seed 303 \
		--conditions '$(HARD_MIX)' --views 8 --epochs 4 --batch-size 256 --lr 1e-4 --variants train:1 --half \
		--out $(PHOTO)/mix3
	cp $(PHOTO)/mix3/tail_train_1.pt ranking/weights/lite2_photo_tail.pt

# The pipeline adapted to the dev catalogue (its stable held-out 20 % never trained on): crop model, index with the
# packaged photo-tuned backbone (whose tuning left the same fifth out), then the retrieval benchmark on the held-out
# watches (about 45 minutes, most of it train-bbox).
ADAPTED := .tiefwatch/bench-adapted
bench-adapted: $(STAMP)
	$(BIN)/tiefwatch --workspace $(ADAPTED) train-bbox $(CATALOG) --holdout 0.2 --samples 32000
	$(BIN)/tiefwatch --workspace $(ADAPTED) index $(CATALOG)
	$(BIN)/python tools/bench_retrieval.py --catalog $(CATALOG) --workspace $(ADAPTED) \
		--section retrieval-adapted --sheet docs/images/bench_adapted_sheet.jpg \
		--title "Retrieval, pipeline adapted to the dev catalogue (crop model, photo-tuned backbone, packaged re-ranker)" \
		--note "Workspace prepared by \`make bench-adapted\`: train-bbox --holdout 0.2 --samples 32000, index (backbone.weights: photo, whose tuning never saw the query watches; index.views: 4)." \
		--json /tmp/adapted.json

# A shop's once-per-catalogue step: the backbone's last three stages tuned on all of this catalogue's watches (queries
# are new simulated shots of them). Needs bench-adapted's crop model; about 8 minutes on an H200 (149 s to simulate
# 32 views of each watch, 343 s for 6 epochs), days on 2 CPU cores. Then the index, and a re-ranker of its own from
# the judged set (the packaged one was trained on other vectors), so the benchmark runs the whole pipeline: crop,
# embed, FAISS, re-rank.
TUNED := .tiefwatch/bench-tuned
bench-tuned: $(STAMP)
	$(BIN)/python tools/tune_tail.py --catalog $(CATALOG) --views 32 --batch-size 512 --lr 3e-4 \
		--variants all:3:6 --half --out $(TUNED)/models
	cp $(ADAPTED)/models/crop.pt $(ADAPTED)/models/crop.config.yaml $(TUNED)/models/
	$(BIN)/tiefwatch --workspace $(TUNED) --set backbone.weights=$(abspath $(TUNED))/models/tail_all_3_6.pt \
		config --save
	$(BIN)/tiefwatch --workspace $(TUNED) index $(CATALOG)
	$(BIN)/python tools/judged_set.py training-csv benchmarks/judged --holdout 0.2 --out $(TUNED)/judged-all.csv \
		--attributes-out $(TUNED)/attributes-all.csv
	$(BIN)/tiefwatch --workspace $(TUNED) train-triplets $(TUNED)/judged-all.csv --views 2 --holdout 0.2 \
		--attributes $(TUNED)/attributes-all.csv
	$(BIN)/python tools/bench_retrieval.py --catalog $(CATALOG) --workspace $(TUNED) \
		--section retrieval-tuned --sheet docs/images/bench_tuned_sheet.jpg \
		--title "Retrieval, backbone tuned on this catalogue (once per catalogue, on a GPU)" \
		--note "Workspace prepared by \`make bench-tuned\` (tools/tune_tail.py --views 32 --batch-size 512 --lr 3e-4 --variants all:3:6 --half: the last three stages tuned on all 3,000 watches, 6 epochs of 96,000 views, 343 s on a lent H200 after 149 s to simulate them; the query photos are new simulated shots, seed 0 against the tuning views' seed 101), crop model of bench-adapted; index.views: 4; its own re-ranker from the judged set (train-triplets --views 2 --holdout 0.2 --attributes, as make similarity-model)." \
		--json /tmp/tuned.json

# Crop boxes on photo-like scenes of held-out watches: the packaged model beside the one bench-adapted trained.
bench-crop: $(STAMP)
	$(BIN)/python tools/bench_crop.py --catalog $(CATALOG) --model bbox/weights/crop_default.pt \
		--model $(ADAPTED)/models/crop.pt --sheet docs/images/crop_worst.jpg \
		--note "crop_default.pt: the packaged model (make crop-model). crop.pt: make bench-adapted (train-bbox --holdout 0.2 --samples 32000)."

# The similarity model that ships with the package, learned from the human-judged set in benchmarks/judged:
# judged triplets + triplets derived from labelled attributes, each anchor also as 2 photo-like shots, and attribute
# heads learned from the labels themselves. Anchors and labels in the retrieval benchmark's held-out fifth of the dev
# catalogue are left out (here and by --holdout 0.2), so its query watches are never shot. The heads' share is the
# cross-validated one among those that keep the exact watch first for photo-like shots of other watches
# (train_triplets.identity_views; benchmarks.md, judged section).
JUDGED := .tiefwatch/build-similarity-default
similarity-model: $(STAMP)
	$(BIN)/python tools/judged_set.py training-csv benchmarks/judged --holdout 0.2 --out $(JUDGED)/judged-all.csv \
		--attributes-out $(JUDGED)/attributes-all.csv
	$(BIN)/tiefwatch --workspace $(JUDGED) index $(CATALOG)
	$(BIN)/tiefwatch --workspace $(JUDGED) train-triplets $(JUDGED)/judged-all.csv --views 2 --holdout 0.2 \
		--attributes $(JUDGED)/attributes-all.csv --out ranking/weights/similarity_default.pt

# Generalisation of human judgements: train on half A of the judged set, measure on the unseen half B.
bench-judged: $(STAMP)
	$(BIN)/python tools/bench_judged.py --catalog $(CATALOG) --workspace $(JUDGED) --doc docs/benchmarks.md

# Attribute triplets over drawn watches: trained on half the watches, measured on the other half, for catalogues of
# growing size and both backbone weights (about 15 minutes).
bench-synthetic: $(STAMP)
	$(BIN)/python tools/bench_synthetic.py --watches 600,1200,2400

# FAISS from 1 k to 1 M vectors grown from the dev catalogue's embeddings (about 20 minutes, ~12 GB of memory).
bench-scale: $(STAMP)
	$(BIN)/tiefwatch --workspace $(JUDGED) index $(CATALOG)
	$(BIN)/python tools/bench_scale.py --index $(JUDGED)/index/catalog.npz --doc docs/benchmarks.md \
		--plot docs/images/scale.png

# Load test of `tiefwatch serve`: 8 concurrent clients x 50 searches on the demo's workspace (built first if
# missing) and, where make similarity-model indexed it, the dev catalogue's; writes docs/benchmarks.md (serve).
bench-serve: $(STAMP)
	test -f .tiefwatch/demo/index/catalog.npz || $(BIN)/tiefwatch demo
	$(BIN)/python tools/bench_serve.py --workspace demo=.tiefwatch/demo \
		$(if $(wildcard $(JUDGED)/index/catalog.npz),--workspace dev=$(JUDGED)) --clients 8 --requests 50

clean:
	rm -rf $(VENV) .tiefwatch .pytest_cache .ruff_cache *.egg-info
