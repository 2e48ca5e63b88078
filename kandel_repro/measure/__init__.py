"""Measurements of this machine: trainable parameters and time per step at each depth
(``cost``), and the input pipeline's speed and memory side by side (``bench``; its
augmentation figures: ``augment_bench``)."""

# The defaults of `make bench` (and of `kandel-repro bench`'s options); here, so that the
# command line reads them without importing the benchmark.
BENCH_DEFAULTS = {"images": 1500, "copies": 24, "size": 96, "warm": 2, "steps": 8, "rounds": 3,
                  "augment_seconds": 6.0,
                  # own-data packing: images packed per format, their side, and the
                  # distinct synthetic images they are hard links to (written once)
                  "own_images": 600, "own_size": 224, "own_distinct": 60,
                  # test-time augmentation's cost: images predicted plain and with 4 and 8
                  # views by the whole-network VGG16
                  "tta_images": 64,
                  # the pretraining steps (a VAE's, a DCGAN's, a classifier's): timed steps
                  # after 3 untimed ones, in each of the alternating rounds
                  "generative_steps": 10}
