"""Option values checked when parsed: a check of the package (which raises
:class:`~kandel_repro.core.errors.ConfigError`) as an argparse ``type``, so a bad value is
argparse's one-line usage error naming the option."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..core.errors import ConfigError
from ..models.backbones import get_backbone


def checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """``check`` as an argparse ``type``: its ConfigError becomes ArgumentTypeError."""
    def parse(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__doc__ = check.__doc__
    return parse


# A backbone's registry name, aliases resolved (``resnet50v2`` → ``resnet50_v2``).
backbone = checked(lambda text: get_backbone(text).name)
