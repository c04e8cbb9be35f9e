"""The ``tuner`` command: parse the arguments, run the command, map errors to exit codes.

Exit codes: 0 done; 1 the sweep stopped on failures, `tuner sync` left MLflow records
waiting (the tracking server does not answer), `tuner compare` could not log its
comparison run, or a round of the same scheduled job is already running; 2 bad input
(nothing was written); 75 the study's storage stopped answering for longer than
``storage.outage_s`` (the same command, run again once it answers, finishes the study);
130 interrupted (the next identical command resumes).

Layout: :mod:`tuner.cli.parser` holds the argument tables, :mod:`tuner.cli.commands`
what each command does (through tuner.app).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from tuner.core.errors import (
    AlreadyRunning,
    ConfigError,
    RecordsPending,
    StorageUnavailable,
    SweepInterrupted,
    SweepStopped,
    TrackingFailed,
)
from tuner.core.masking import mask

__all__ = ["OUTAGE_EXIT", "command", "main"]

OUTAGE_EXIT = 75  # sysexits' EX_TEMPFAIL: a temporary failure; try again


def command() -> NoReturn:
    """The `tuner` command: ``main``, then a quick exit (tuner.core.exits)."""
    from tuner.core.exits import exit_quickly

    exit_quickly(main())


def main(argv: Sequence[str] | None = None) -> int:
    from tuner.cli.parser import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option: in
    # `tuner compare A B --html x.html run_dir=...` the words after the option are its
    # "unrecognized arguments". A command that takes words (``words``: the name of its
    # list, set in tuner.cli.parser) gets them; any other refuses them, as before.
    words = getattr(args, "words", None)
    if extra and (words is None or any(w.startswith("-") for w in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, words, [*getattr(args, words), *extra])
    try:
        return args.func(args)
    except ConfigError as error:
        print(mask(f"error: {error}"), file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 2
    except (SweepStopped, RecordsPending, AlreadyRunning, TrackingFailed) as error:
        print(mask(f"error: {error}"), file=sys.stderr)
        return 1
    except StorageUnavailable as error:
        print(mask(f"error: {error}; every slot stopped and each trial's MLflow run ended. "
                   "Nothing trained is lost: run the same command again once the storage "
                   "answers, and the trials cut short are repeated."), file=sys.stderr)
        return OUTAGE_EXIT
    except (KeyboardInterrupt, SweepInterrupted, SystemExit) as error:
        # From here a second Ctrl-C ends the process at once, even in the interpreter's
        # exit handlers; the trials' records were written before we got here.
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
        # SystemExit: Lightning answers Ctrl-C inside fit() with sys.exit(1).
        print(f"\ninterrupted ({type(error).__name__}): {_what_was_cut_short(error)}",
              file=sys.stderr)
        return 130


def _what_was_cut_short(error: BaseException) -> str:
    """What an interruption left, as far as the command knows (a sweep tells it)."""
    said = getattr(error, "said", None)
    if said is not None:
        return said
    cut_short = getattr(error, "trials_cut_short", None)
    if cut_short is None:
        return ("any running trial is marked FAIL and its run KILLED; run the same command "
                "again to resume.")
    if not cut_short:
        return "no trial had started; run the same command again to start."
    numbers = ", ".join(str(n) for n in cut_short)
    if len(cut_short) == 1:
        return (f"trial {numbers} is marked FAIL (interrupted) and its run KILLED; run the "
                "same command again to resume (it is trained again).")
    return (f"trials {numbers} are marked FAIL (interrupted) and their runs KILLED; run the "
            "same command again to resume (they are trained again).")
