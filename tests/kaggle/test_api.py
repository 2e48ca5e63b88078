"""The real kaggle client against a loopback stand-in for Kaggle (tests/fake_kaggle.py)."""
import io
import zipfile

import pytest

from kandel_repro.cli.main import main
from kandel_repro.kaggle.api import COMPETITION, KaggleError, download


def competition_zip(root, drop=None):
    """The Kaggle zip's layout, made from a synthetic set (optionally missing a file)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not relative.startswith(".") and relative != drop:
                zipped.write(path, relative)
    return buffer.getvalue()


def test_download_verify_pack(tiny_pcam, kaggle_env, tmp_path):
    from kandel_repro.readers import pcam_layout
    from kandel_repro.readers.registry import get_reader

    with kaggle_env(competition_zip(tiny_pcam)) as server:
        out = download(tmp_path / "data" / "pcam", counts=None, quiet=True)
    assert [op for op, _ in server.calls] == ["DownloadDataFiles"]
    assert server.calls[0][1] == {"competitionName": COMPETITION}
    index = pcam_layout.verify(out)
    assert len(index.train_ids) == 60 and len(index.test_ids) == 20
    data = get_reader("pcam").load(out, workers=1, progress=False)
    assert data.x.shape == (60, 32, 32, 3)
    assert not (tmp_path / "data" / ".pcam.download").exists()
    assert not list((tmp_path).rglob("kaggle.json"))  # no credential was written anywhere


def test_incomplete_download_is_reported_and_not_put_in_place(tiny_pcam, kaggle_env, tmp_path):
    victim = sorted(p.name for p in (tiny_pcam / "test").iterdir())[0]
    with kaggle_env(competition_zip(tiny_pcam, drop=f"test/{victim}")):
        with pytest.raises(Exception, match=f"{victim[:-4]}.*has no file"):
            download(tmp_path / "pcam", counts=None, quiet=True)
    assert not (tmp_path / "pcam").exists()


def test_the_competition_counts_are_required_by_default(tiny_pcam, kaggle_env, tmp_path):
    with kaggle_env(competition_zip(tiny_pcam)):
        with pytest.raises(Exception, match="holds 60 tifs; the competition has 220,025"):
            download(tmp_path / "pcam", quiet=True)
    assert not (tmp_path / "pcam").exists()


def test_a_401_says_to_renew_the_token(tiny_pcam, kaggle_env, tmp_path, capsys):
    with kaggle_env(competition_zip(tiny_pcam), key="wrong"):
        assert main(["data", "download", "--out", str(tmp_path / "pcam"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (401)" in err and "kaggle.json" in err
    assert "wrong" not in err  # the key is never printed


def test_a_404_names_the_competition(tiny_pcam, kaggle_env, tmp_path):
    with kaggle_env(competition_zip(tiny_pcam)):
        with pytest.raises(KaggleError, match="no competition 'no-such-thing' \\(404\\)"):
            download(tmp_path / "pcam", competition="no-such-thing", quiet=True)


def test_a_403_says_to_accept_the_rules(tiny_pcam, kaggle_env, tmp_path):
    with kaggle_env(competition_zip(tiny_pcam)) as server:
        server.fail_with = 403
        with pytest.raises(KaggleError, match="accept the competition rules at https://www.kaggle.com/"):
            download(tmp_path / "pcam", quiet=True)


def test_missing_credentials_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(KaggleError, match="no Kaggle credentials found.*kaggle.json"):
        download(tmp_path / "data" / "pcam", quiet=True)
    assert not (tmp_path / "data").exists()  # nothing created


def test_the_kaggle_command_line_reaches_the_stand_in_too(tiny_pcam, kaggle_env, tmp_path):
    """The same stand-in serves the official `kaggle` CLI (what users type by hand)."""
    import subprocess
    import sys

    with kaggle_env(competition_zip(tiny_pcam)) as server:
        run = subprocess.run([sys.executable, "-m", "kaggle", "competitions", "download",
                              "-c", COMPETITION, "-p", str(tmp_path / "cli")],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [op for op, _ in server.calls] == ["DownloadDataFiles"]
    with zipfile.ZipFile(tmp_path / "cli" / f"{COMPETITION}.zip") as zipped:
        assert "train_labels.csv" in zipped.namelist()


@pytest.mark.parametrize("given, missing", [("KAGGLE_USERNAME", "KAGGLE_KEY"),
                                            ("KAGGLE_KEY", "KAGGLE_USERNAME")])
def test_half_a_credential_names_the_missing_variable(tmp_path, monkeypatch, given, missing):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(given, "someone")
    with pytest.raises(KaggleError, match=f"{given} is set but {missing} is not"):
        download(tmp_path / "pcam", quiet=True)
