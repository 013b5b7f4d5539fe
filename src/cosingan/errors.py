"""The one exception type users see: the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (file, label map, config, run folder). The message names the file and the problem."""

    def __init__(self, message: str):
        # messages quoted from libraries (nibabel, PIL) can span lines: the user gets one
        super().__init__(" ".join(str(message).split()))
