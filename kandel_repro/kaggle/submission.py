"""Kaggle submission files, checked before anything leaves the machine.

A PCam run writes ``submission.csv`` (``id,label``: one probability per test id, in
``sample_submission.csv`` order). :func:`validate_submission` refuses a file that
Kaggle would reject or score wrongly, and names every problem it finds.

A run scored with test-time augmentation (``--tta``) also has ``submission_tta.csv``;
that is the file a run submits then (:func:`run_submission`), its description says so,
and its scores are recorded as ``kaggle_public_auc_tta``/``kaggle_private_auc_tta``
(:func:`score_keys`), beside any plain scores submitted before: a table's plain grid
never shows a TTA score.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ConfigError, KandelError
from ..core.files import read_json, write_json
from ..readers.pcam_layout import ids_fingerprint
from ..runs import rundir
from .api import COMPETITION, KaggleError, api, call

if TYPE_CHECKING:  # NOTE: annotations only; pandas and the client load when used
    import pandas as pd
    from kaggle.api.kaggle_api_extended import KaggleApi

SHOW = 3  # offending ids quoted per problem


class SubmissionError(KandelError):
    """A submission file that must not be uploaded."""


def _some(values):
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:SHOW])
    return shown + (f", … ({len(values)} in all)" if len(values) > SHOW else "")


def validate_submission(path: str | Path, sample_submission: str | Path) -> pd.DataFrame:
    """Check ``path`` against ``sample_submission``; return the submission as a DataFrame.

    Checks: header exactly ``id,label``; exactly the sample's id set, with no duplicate
    and none missing; every label a finite probability in [0, 1]. Raises
    :class:`SubmissionError` listing every problem found.
    """
    import pandas as pd

    path, sample_submission = Path(path), Path(sample_submission)
    for file in (path, sample_submission):
        if not file.is_file():
            raise SubmissionError(f"missing {file}")
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
        raise SubmissionError(f"{path} is not a readable CSV: {exc}") from None
    if list(frame.columns) != ["id", "label"]:
        raise SubmissionError(f"{path}: the header must be exactly 'id,label', found "
                              f"{','.join(map(str, frame.columns))!r}")
    expected = pd.read_csv(sample_submission, dtype={"id": str})["id"]
    problems = []
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        problems.append(f"duplicate ids: {_some(duplicated.unique())}")
    missing = set(expected) - set(frame["id"])
    if missing:
        problems.append(f"ids of {sample_submission.name} missing: {_some(sorted(missing))}")
    extra = set(frame["id"]) - set(expected)
    if extra:
        problems.append(f"ids not in {sample_submission.name}: {_some(sorted(extra))}")
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(labels) | (labels < 0) | (labels > 1)
    if bad.any():
        shown = [f"{frame['id'].iloc[i]}={frame['label'].iloc[i]}" for i in np.flatnonzero(bad)]
        problems.append(f"labels that are not probabilities in [0, 1]: {_some(shown)}")
    if problems:
        raise SubmissionError(f"{path} must not be submitted:\n  - " + "\n  - ".join(problems))
    return frame


def submission_file(run_dir: str | Path) -> Path:
    """The file a run submits: ``submission_tta.csv`` when it was scored with test-time
    augmentation, else ``submission.csv``."""
    tta = Path(run_dir) / rundir.SUBMISSION_TTA
    return tta if tta.is_file() else Path(run_dir) / rundir.SUBMISSION


def score_keys(csv: str | Path) -> dict[str, str]:
    """The metrics keys of the Kaggle scores of ``csv`` (a run's submission file):
    ``{"public": …, "private": …, "ref": …, "scored_at": …}``, with ``_tta`` after each
    for ``submission_tta.csv``."""
    suffix = "_tta" if Path(csv).name == rundir.SUBMISSION_TTA else ""
    return {"public": f"kaggle_public_auc{suffix}", "private": f"kaggle_private_auc{suffix}",
            "ref": f"kaggle_submission_ref{suffix}", "scored_at": f"kaggle_scored_at{suffix}"}


def _tta_words(run_dir, csv):
    """``" (test-time augmentation, 8 views)"`` for a TTA submission file, else ``""``."""
    if Path(csv).name != rundir.SUBMISSION_TTA:
        return ""
    return f" (test-time augmentation, {rundir.tta_views(run_dir)} views)"


def run_submission(run_dir: str | Path, sample: str | Path | None = None,
                   data_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(submission file, sample_submission.csv)`` of a finished PCam run folder: its
    ``submission_tta.csv`` where it has one (:func:`submission_file`), else
    ``submission.csv``.

    The sample file is ``sample`` when given, else the one in ``data_dir``, else the one
    in the folder the run was trained on (its ``config.json``), so runs trained on
    another machine (a Kaggle kernel) or from another folder can be checked here. A run
    that recorded its sample ids' fingerprint refuses a sample file with other ids.
    """
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    if config is None:
        raise SubmissionError(f"{run_dir} is not a run folder (no readable {rundir.CONFIG})")
    if config.get("protocol", "pcam") != "pcam" or config.get("dataset", "pcam") != "pcam":
        raise SubmissionError(f"{run_dir} was trained on {config.get('dataset')} data; only runs "
                              "on the Kaggle competition's files make Kaggle submissions")
    if not rundir.is_finished(run_dir):
        raise SubmissionError(f"{run_dir} has not finished (no readable {rundir.METRICS})")
    if sample is None:
        folder = data_dir if data_dir is not None else config.get("data_dir")
        sample = Path(folder) / "sample_submission.csv" if folder else None
        if sample is None or not sample.is_file():
            raise SubmissionError(
                f"{run_dir} was trained on the data in {config.get('data_dir')!r}, whose "
                f"sample_submission.csv is not {'there' if data_dir is None else f'in {data_dir}'}: "
                "give --data FOLDER (the competition's files) or --sample FILE")
    sample = Path(sample)
    recorded = config.get("sample_ids_sha1")
    if recorded and sample.is_file():
        import pandas as pd

        ids = pd.read_csv(sample, dtype={"id": str}, usecols=["id"])["id"]
        if ids_fingerprint(ids) != recorded:
            raise SubmissionError(f"{sample} is not the sample file of the data {run_dir.name} "
                                  "predicted (its test ids differ); give the competition's own")
    return submission_file(run_dir), sample


def validate_path(path: str | Path, sample: str | Path | None = None,
                  data_dir: str | Path | None = None) -> str:
    """What ``kandel-repro validate-submission`` does: check a run folder's submission
    (against the sample file of its data, or ``sample``/``data_dir``'s) or a CSV file
    (against ``sample``, or ``data_dir``'s); return a one-line summary."""
    path = Path(path)
    if path.is_dir():
        path, sample = run_submission(path, sample, data_dir)
    elif sample is None and data_dir is None:
        raise ConfigError("give --sample SAMPLE_SUBMISSION.csv (or --data FOLDER) with a CSV "
                          "file, or give a run folder")
    elif sample is None:
        sample = Path(data_dir) / "sample_submission.csv"
    frame = validate_submission(path, sample)
    return (f"{path}: valid ({len(frame):,} test ids, probabilities in "
            f"[{frame['label'].min():.4f}, {frame['label'].max():.4f}])")


# -- submitting to Kaggle and recording the score ---------------------------------------

RECORD = rundir.KAGGLE_RECORD  # in the run folder: what was submitted, never credentials
SCORE_KEYS = ("kaggle_public_auc", "kaggle_private_auc")
DEFAULT_TIMEOUT = 1800.0  # seconds to wait for a score
DEFAULT_POLL = 30.0  # seconds between looks at the submission list


class ScoreTimeout(KandelError):
    """The submission was made but not scored in time; it stays recorded as pending."""


class ScoringFailed(KandelError):
    """Kaggle accepted the submission but could not score it (its reason is given)."""


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def submission_state(run_dir: str | Path) -> str:
    """``"scored"``, ``"pending"`` (submitted, score not read yet) or ``"new"``, of the
    file the run submits (:func:`submission_file`: a run scored on its plain file and
    since given TTA predictions is new again)."""
    run_dir = Path(run_dir)
    metrics = rundir.read_metrics(run_dir) or {}
    if metrics.get(score_keys(submission_file(run_dir))["ref"]) is not None:
        return "scored"
    record = run_dir / RECORD
    if record.is_file() and read_json(record).get("status") == "pending":
        return "pending"
    return "new"


def _find(entries, record):
    """Our entry in Kaggle's submission list: by ref, else by its unique description."""
    for entry in entries or []:
        if entry is None:
            continue
        if record["ref"] and int(entry.ref or 0) == record["ref"]:
            return entry
        if not record["ref"] and entry.description == record["description"]:
            return entry
    return None


def _score(text):
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def wait_for_score(client: KaggleApi, record: dict, timeout: float = DEFAULT_TIMEOUT,
                   poll: float = DEFAULT_POLL, log: Callable[[str], None] = print,
                   sleep: Callable[[float], None] | None = None,
                   clock: Callable[[], float] | None = None) -> Any:
    """Poll Kaggle's submission list until ``record``'s entry is scored; return the entry.

    Bounded by ``timeout`` seconds (:class:`ScoreTimeout` after it) and interruptible
    (Ctrl-C raises ``KeyboardInterrupt`` between polls). A submission Kaggle could not
    score raises :class:`ScoringFailed` with Kaggle's reason.
    """
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    competition = record["competition"]
    deadline = clock() + timeout
    polls = 0
    while True:
        entries = call(competition, "reading the submission list",
                       client.competition_submissions, competition)
        polls += 1
        entry = _find(entries, record)
        status = getattr(getattr(entry, "status", None), "name", str(getattr(entry, "status", "")))
        if status == "COMPLETE":
            return entry
        if status == "ERROR":
            raise ScoringFailed(f"Kaggle could not score submission {record['ref']} "
                              f"({record['description']}): {entry.error_description}")
        remaining = deadline - clock()
        if remaining <= 0:
            raise ScoreTimeout(
                f"submission {record['ref'] or record['description']!r} was not scored within "
                f"{timeout:g} s ({polls} looks at the submission list); it stays on Kaggle and "
                f"is recorded as pending in {RECORD}")
        if polls == 1:
            log(f"  waiting for Kaggle to score it (up to {timeout:g} s; Ctrl-C stops waiting, "
                "the submission stays recorded)")
        sleep(min(poll, remaining))


def submit_run(run_dir: str | Path, message: str | None = None, competition: str | None = None,
               timeout: float = DEFAULT_TIMEOUT, poll: float = DEFAULT_POLL,
               resubmit: bool = False, quiet: bool = False, client: KaggleApi | None = None,
               log: Callable[[str], None] = print, sleep: Callable[[float], None] | None = None,
               clock: Callable[[], float] | None = None, sample: str | Path | None = None,
               data_dir: str | Path | None = None) -> dict:
    """Validate, submit and score one finished PCam run; return its updated metrics.

    The file is validated first (:func:`validate_submission`): an invalid file is never
    uploaded. The submission is recorded in ``RUN/kaggle-submission.json`` as soon as
    Kaggle accepts it, so a run whose score was not read (timeout, Ctrl-C) is polled
    again — not submitted again — by the next call. The public and private AUC are
    written into ``metrics.json`` (atomically) as ``kaggle_public_auc`` and
    ``kaggle_private_auc`` (a run with test-time augmentation submits its
    ``submission_tta.csv``, scored as ``kaggle_public_auc_tta`` and ``kaggle_private_auc_tta``:
    :func:`score_keys`). A run already scored is left alone unless ``resubmit``.
    """
    run_dir = Path(run_dir)
    csv, sample = run_submission(run_dir, sample, data_dir)
    validate_submission(csv, sample)
    refuse_synthetic(run_dir)
    return _submit_validated(run_dir, csv, message, competition, timeout, poll, resubmit,
                             quiet, client, log, sleep, clock)


def _submit_validated(run_dir, csv, message, competition, timeout, poll, resubmit, quiet,
                      client, log, sleep, clock):
    """:func:`submit_run` after the validation of ``csv``, ``run_dir``'s submission file."""
    competition = competition or COMPETITION
    metrics = rundir.read_metrics(run_dir)
    state = submission_state(run_dir)
    keys, tta = score_keys(csv), _tta_words(run_dir, csv)
    if state == "scored" and not resubmit:
        log(f"{run_dir.name}: scored before{tta} (submission {metrics[keys['ref']]}: "
            f"private {metrics.get(keys['private'])}, public {metrics.get(keys['public'])}); "
            "--resubmit to submit again")
        return metrics
    digest = _sha256(csv)
    record = read_json(run_dir / RECORD) if state == "pending" else None
    if record and not resubmit and record.get("sha256") == digest \
            and record.get("competition") == competition:
        log(f"{run_dir.name}: submitted before as {record['ref']}; reading its score")
    else:
        client = client or api()
        description = (message or f"kandel_repro {run_dir.name} ({digest[:8]})") + tta
        log(f"{run_dir.name}: submitting {csv}{tta} to {competition}")
        response = call(competition, "submitting", client.competition_submit, str(csv),
                        description, competition, quiet=quiet)
        if response.message == client.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleError(f"uploading {csv} to Kaggle failed, so nothing was submitted; "
                              "try again")
        record = {"competition": competition, "ref": int(response.ref or 0),
                  "description": description, "file": csv.name, "sha256": digest,
                  "tta_views": rundir.tta_views(run_dir) if tta else 1,
                  "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "status": "pending", "message": response.message}
        write_json(run_dir / RECORD, record)
    client = client or api()
    try:
        entry = wait_for_score(client, record, timeout, poll, log, sleep, clock)
    except KeyboardInterrupt:
        log(f"{run_dir.name}: stopped waiting; the submission is on Kaggle and recorded in "
            f"{run_dir / RECORD}: `kandel-repro submit {run_dir}` reads its score later "
            "without submitting again")
        raise
    except ScoreTimeout as exc:
        raise ScoreTimeout(f"{run_dir.name}: {exc}: `kandel-repro submit {run_dir}` reads its "
                           "score later without submitting again (or give a longer "
                           "--timeout)") from None
    except ScoringFailed:
        write_json(run_dir / RECORD, {**record, "status": "error"})
        raise
    public, private = _score(entry.public_score), _score(entry.private_score)
    record = {**record, "ref": int(entry.ref or record["ref"]), "status": "scored",
              "public_score": public, "private_score": private}
    metrics = rundir.update_metrics(run_dir, **{
        keys["public"]: public, keys["private"]: private, keys["ref"]: record["ref"],
        keys["scored_at"]: datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_json(run_dir / RECORD, record)
    log(f"{run_dir.name}: Kaggle AUC private {private}, public {public} "
        f"(submission {record['ref']}){tta}")
    return metrics


# Set to 1 to submit runs made from synthetic data: for tests against a stand-in for
# Kaggle only (the real competition cannot score them).
ALLOW_SYNTHETIC = "KANDEL_REPRO_SUBMIT_SYNTHETIC"


def refuse_synthetic(run_dir: str | Path) -> None:
    """A :class:`SubmissionError` for a run trained on synthetic data (unless
    ``$KANDEL_REPRO_SUBMIT_SYNTHETIC`` is 1)."""
    config = rundir.read_config(run_dir) or {}
    if config.get("synthetic") and os.environ.get(ALLOW_SYNTHETIC) != "1":
        raise SubmissionError(f"{run_dir} was trained on synthetic data (made by kandel-repro "
                              "data synthetic), whose test ids Kaggle does not know; only runs "
                              "on the competition's files can be scored")


def _allowed(limits):
    """Whether Kaggle's daily limit lets one more submission through now."""
    if limits.num_allowed_now > 0:
        return True
    return not (limits.num_today or limits.num_total)  # no team yet: all zero, first one allowed


def submit_runs(run_dirs: Iterable[str | Path], message: str | None = None,
                competition: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                poll: float = DEFAULT_POLL, resubmit: bool = False, quiet: bool = False,
                client: KaggleApi | None = None, log: Callable[[str], None] = print,
                queue_file: str | Path | None = None, sleep: Callable[[float], None] | None = None,
                clock: Callable[[], float] | None = None, sample: str | Path | None = None,
                data_dir: str | Path | None = None) -> dict[str, str]:
    """Submit and score several runs within Kaggle's daily limit; ``{run: outcome}``.

    Outcomes: ``scored``, ``scored before``, ``pending`` (submitted, not scored in time),
    ``queued`` (the daily limit is reached: submit again after it resets), ``invalid``
    (the file failed validation, or the run was trained on synthetic data; nothing
    uploaded), ``error`` (Kaggle could not score it). ``sample``/``data_dir``: where the
    competition's ``sample_submission.csv`` is, for runs trained elsewhere
    (:func:`run_submission`). Runs already submitted are polled first; they cost no submission. The queued
    runs are listed in ``queue_file`` when one is given (removed when none is left).
    Credential and connection errors stop the whole batch.
    """
    competition = competition or COMPETITION
    order = {"pending": 0, "new": 1, "scored": 2}
    run_dirs = sorted((Path(r) for r in run_dirs), key=lambda r: order[submission_state(r)])
    outcomes, queued, limits = {}, [], None
    for run_dir in run_dirs:
        state = submission_state(run_dir)
        if state == "scored" and not resubmit:
            outcomes[run_dir.name] = "scored before"
            continue
        try:
            csv, sample_file = run_submission(run_dir, sample, data_dir)
            validate_submission(csv, sample_file)
            refuse_synthetic(run_dir)
        except SubmissionError as exc:
            log(f"{run_dir.name}: not submitted: {exc}")
            outcomes[run_dir.name] = "invalid"
            continue
        client = client or api()
        if state != "pending" or resubmit:
            limits = call(competition, "reading the submission limits",
                          client.competition_get_submission_limits, competition)
            if not _allowed(limits):
                queued.append(run_dir)
                outcomes[run_dir.name] = "queued"
                continue
        try:
            _submit_validated(run_dir, csv, message, competition, timeout, poll, resubmit,
                              quiet, client, log, sleep, clock)
            outcomes[run_dir.name] = "scored"
        except ScoreTimeout as exc:
            log(str(exc))
            outcomes[run_dir.name] = "pending"
        except ScoringFailed as exc:
            log(f"{run_dir.name}: {exc}")
            outcomes[run_dir.name] = "error"
    if queued:
        log(f"{len(queued)} run(s) queued: Kaggle's daily submission limit is reached "
            f"({limits.num_today} today). The same command submits them after the limit "
            "resets (midnight UTC); finished runs are not trained again: "
            + ", ".join(r.name for r in queued))
    if queue_file is not None:
        queue_file = Path(queue_file)
        if queued:
            write_json(queue_file, {"competition": competition,
                                    "queued": [r.name for r in queued],
                                    "reason": "daily submission limit reached"})
        else:
            queue_file.unlink(missing_ok=True)
    return outcomes


def summarise(outcomes: dict[str, str]) -> str:
    """One line: how many runs ended how (``Kaggle: 2 scored, 1 queued``)."""
    counts = Counter(outcomes.values())
    return "Kaggle: " + (", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
                         or "no finished PCam run to submit")


def submit_paths(paths: Sequence[str | Path], message: str | None = None,
                 log: Callable[[str], None] = print, **options: Any) -> int:
    """What ``kandel-repro submit`` does; returns its exit status.

    ``paths``: run folders, or folders of them (a queue file is kept in a single folder
    of runs). ``options`` go to :func:`submit_runs`. Status 0 when every run is scored
    (now or before) or queued for after Kaggle's daily limit; 1 when one is pending,
    invalid or could not be scored.
    """
    runs, queue_file = [], None
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a run folder or a folder of run folders")
        found = rundir.finished_runs(path, protocol="pcam")
        if not found:
            raise ConfigError(f"{path} holds no finished PCam run")
        if found != [path]:
            queue_file = path / "kaggle-queue.json"
        runs += found
    if message and len(runs) > 1:
        raise ConfigError("-m/--message names one submission; give one run folder, or leave "
                          "it out (each run is described by its name)")
    outcomes = submit_runs(runs, message=message, log=log,
                           queue_file=queue_file if len(paths) == 1 else None, **options)
    log(summarise(outcomes))
    # NOTE: queued is not a failure (the limit resets); pending, invalid and error are.
    return 0 if set(outcomes.values()) <= {"scored", "scored before", "queued"} else 1
