"""The Kaggle competition through the official ``kaggle`` client.

Credentials are found the usual way (``KAGGLE_USERNAME``/``KAGGLE_KEY``,
``KAGGLE_API_TOKEN``, or ``kaggle.json`` in ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle/``);
this module only checks that some exist, never reads, copies or logs them. Failures
of the service become :class:`KaggleError` messages that say what to do.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import KandelError
from ..data.layouts import COMPETITION
from ..readers.pcam_layout import KAGGLE_COUNTS, verify

if TYPE_CHECKING:  # NOTE: annotations only; the client loads when Kaggle is called
    from kaggle.api.kaggle_api_extended import KaggleApi

_T = TypeVar("_T")

SESSION_LIMIT_HOURS = 12  # Kaggle's limit for a GPU session
DEFAULT_BUDGET_HOURS = 11.0  # ours for a kernel: an hour's margin for the last epoch and outputs
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_HELP = ("create an API token at https://www.kaggle.com/settings (API → Create New "
              "Token) and save the downloaded kaggle.json as ~/.kaggle/kaggle.json "
              "(chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY")


class KaggleError(KandelError):
    """Kaggle could not be reached, refused us, or answered something unusable."""


def _config_dir():
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")


def has_credentials() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    return (_config_dir() / "kaggle.json").is_file() or (_config_dir() / "access_token").is_file()


def api() -> KaggleApi:
    """An authenticated ``KaggleApi``, or a :class:`KaggleError` saying what is missing."""
    given = {name: bool(os.environ.get(name)) for name in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    if len(set(given.values())) > 1:
        have, missing = sorted(given, key=given.get, reverse=True)
        raise KaggleError(f"{have} is set but {missing} is not: set both (the key is in the "
                          f"kaggle.json of your API token), or unset {have} to use "
                          f"{_config_dir() / 'kaggle.json'}")
    if not has_credentials():
        raise KaggleError(f"no Kaggle credentials found: {TOKEN_HELP}")
    from kaggle.api.kaggle_api_extended import KaggleApi

    client = KaggleApi()
    try:
        client.authenticate()
    except SystemExit:  # the client exits when it finds nothing usable
        raise KaggleError(f"the Kaggle client did not accept the credentials found: {TOKEN_HELP}") from None
    return client


def explain(exc: BaseException, competition: str | None, action: str) -> KaggleError | None:
    """A :class:`KaggleError` for an exception raised by the client while ``action``."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return KaggleError(f"cannot reach Kaggle while {action} ({exc.__class__.__name__}); "
                           "check the internet connection or proxy settings")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return KaggleError(f"Kaggle refused the credentials (401) while {action}: the API "
                           f"token may be expired or revoked; {TOKEN_HELP}")
    if status == 403 and competition is None:
        return KaggleError(f"Kaggle refused access (403) while {action}: "
                           f"{_server_message(exc.response) or 'check the account of your API token'}")
    if status == 403:
        return KaggleError(f"Kaggle refused access to {competition!r} (403) while {action}: "
                           f"accept the competition rules at {RULES_URL} with the account "
                           "of your API token, then try again")
    if status == 404 and competition is None:
        return KaggleError(f"Kaggle found nothing (404) while {action}; check the name")
    if status == 404:
        return KaggleError(f"Kaggle has no competition {competition!r} (404) while {action}; "
                           "check the name")
    if status is not None:
        return KaggleError(f"Kaggle answered HTTP {status} while {action}: "
                           f"{_server_message(exc.response) or exc}")
    return None


def _server_message(response):
    try:
        return str(response.json().get("message") or "")
    except Exception:  # noqa: BLE001 - not JSON: say nothing more
        return ""


def call(competition: str | None, action: str, function: Callable[..., _T], *args: Any,
         **kwargs: Any) -> _T:
    """``function(*args, **kwargs)``, with the client's failures explained (``competition``
    None: the call is not about a competition, e.g. a data set or a kernel)."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - translated below, or re-raised
        error = explain(exc, competition, action)
        if error is None:
            raise
        raise error from None


def download(dest: str | Path, competition: str = COMPETITION,
             counts: str | dict[str, int] | None = "kaggle", quiet: bool = False) -> Path:
    """Download, unzip and verify the competition files into ``dest``; return ``dest``.

    The zip is fetched by the client (resumable, with its progress bar) into
    ``dest``'s parent, unpacked into a temporary folder, verified with
    :func:`kandel_repro.readers.pcam_layout.verify` (``counts="kaggle"``: the competition's
    220,025 + 57,458 files; None: consistency only), and only then moved to ``dest``.
    Incomplete or inconsistent data is reported and never put in place.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise KaggleError(f"{dest} exists and is not empty; verify it with 'kandel-repro data "
                          f"verify --data {dest}', or choose another folder")
    client = api()  # credentials first: nothing is created without them
    staging = dest.parent / f".{dest.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    call(competition, "downloading the data", client.competition_download_files,
          competition, path=str(staging), quiet=quiet)
    archive = staging / f"{competition}.zip"
    if not archive.is_file():
        raise KaggleError(f"the Kaggle client finished without writing {archive}")
    unpacked = staging / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            for member in tqdm(members, desc=f"unzipping {archive.name}", unit="file", disable=quiet):
                zipped.extract(member, unpacked)
    except zipfile.BadZipFile as exc:
        raise KaggleError(f"{archive} is not a complete zip ({exc}); delete it and download "
                          "again") from None
    verify(unpacked, KAGGLE_COUNTS if counts == "kaggle" else counts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rmdir()  # empty, checked above
    os.replace(unpacked, dest)
    archive.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    return dest
