"""The augmentation study's table (no training: run folders written by tests/helpers.py):
what each policy sets, in the header, and the question whether the best depth changes."""
from helpers import finished_grid

from kandel_repro.report.tables import write_table


def test_the_augmentation_table_names_each_policy_and_answers_its_question(tmp_path):
    from kandel_repro.readers.synthetic.pcam import write_synthetic_pcam

    # (a validation split with at least 10 images of each class: paired tests assessable)
    data = write_synthetic_pcam(tmp_path / "pcam", n_train=160, n_test=10, seed=3, size=32,
                                progress=False)
    runs = tmp_path / "runs"
    assert len(finished_grid("augmentation", data, runs)) == 20
    paths = write_table("augmentation", runs, tmp_path / "out")
    assert sorted(p.name for p in paths if p.suffix == ".png") == [
        "augmentation_curves.png", "augmentation_heatmap.png", "augmentation_radar.png"]
    text = (tmp_path / "out" / "augmentation.md").read_text()
    assert ("- Columns (augmentation (training split)), each as it differs from the paper:\n"
            "  - none: --no-augmentation\n"
            "  - paper: as the paper\n"
            "  - paper + colour: --brightness 0.1 --contrast 0.2 --saturation 0.2 --hue 0.05\n"
            "  - paper + HED strong: --stain-jitter 0.2\n") in text
    # the policies are the experiment, not deviations of it
    assert "stain_jitter:" not in text and "augmentation: off" not in text
    assert "| Fine-tuned blocks | none | paper | paper + colour | paper + HED strong |" in text
    answer = next(line for line in text.splitlines()
                  if line.startswith("- Does the best depth change with the augmentation policy?"))
    assert any(f"— **{word}** (one run per cell, seed 0):" in answer for word in (
        "does not change", "changes", "not distinguishable"))
