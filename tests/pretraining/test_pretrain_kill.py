"""A pretraining run killed (SIGKILL) in the middle of its second epoch and resumed
gives the weights of one trained in one call (kandel_repro.pretraining.pretrain)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import same_weights_files as _same

from kandel_repro.pretraining import pretrain as P

TINY = dict(batch_size=8, widths=(8, 16, 16, 16), latent=8, verbose=0, workers=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def straight(tiny_pcam, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, P.pretrain("dcgan", tiny_pcam, out, epochs=2, cache_dir=cache, **TINY)


KILLED = """
import sys, time
from pathlib import Path
from kandel_repro.pretraining import images as pretrain_data, pretrain
out = Path(sys.argv[2])
plain = pretrain_data.fetch

def slow(pool, positions):
    if (out / "checkpoint.json").is_file():  # epoch 1 is finished: we are in epoch 2
        (out.parent / "in_epoch_2").touch()
        time.sleep(0.5)
    return plain(pool, positions)

pretrain_data.fetch = slow
if __name__ == "__main__":
    pretrain.pretrain("dcgan", sys.argv[1], out, epochs=2, cache_dir=sys.argv[3],
                      batch_size=8, widths=(8, 16, 16, 16), latent=8, verbose=0, workers=1)
"""


def test_kill_mid_epoch_then_resume_equals_one_call(straight, tiny_pcam, cache, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    child = subprocess.Popen([sys.executable, str(script), str(tiny_pcam), str(out), str(cache)],
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "in_epoch_2").exists():
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 1
    assert not (out / "metrics.json").exists()
    said = []
    P.pretrain("dcgan", tiny_pcam, out, epochs=2, cache_dir=cache, log=said.append, **TINY)
    assert any("resuming after epoch 1" in line for line in said)
    assert _same(P.trunk_weights_file(out), P.trunk_weights_file(straight[0]))
    import pandas as pd

    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
