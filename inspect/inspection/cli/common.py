"""Shared by the command groups: the usage error, the version, the --device option, intervals."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from inspection.model_paths import ModelNotFoundError, find_model
from inspection.types import InspectionError


class UsageError(InspectionError, ValueError):
    """A command-line request that cannot be carried out as given."""


def software_version() -> str:
    """This installation's version (the package metadata's; ``unknown`` when the package is not installed).

    Returns
    -------
    str
    """
    try:
        return metadata.version("wafer-inspect")
    except metadata.PackageNotFoundError:
        return "unknown"


def add_device_option(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """Add ``--device`` to ``parser``.

    A command with a recipe defaults to the recipe's ``classify.device`` (``default`` None), one without to
    ``default``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    default : str, optional
        The device when the option is not given and no recipe names one.
    """
    parser.add_argument("--device", choices=("cpu", "cuda", "trt", "auto"), default=default,
                        help="where the model runs: cuda and trt need the GPU build (README, GPU stations)"
                             + ("; default: the recipe's classify.device" if default is None else ""))


def print_baseline(baseline: dict[str, Any], *, unit: str) -> None:
    """Print the ``--compare`` lines of the classifiers' evals: the baseline's figures and the paired differences.

    Parameters
    ----------
    baseline : dict
        The ``baseline`` section of an evaluation report (its figures, ``difference`` and ``difference_ci95``).
    unit : str
        What the figures count (e.g. ``images``).
    """
    difference, paired = baseline["difference"], baseline["difference_ci95"]
    print(f"against {baseline['model']}: accuracy {baseline['accuracy']:.4f}, macro-F1 {baseline['macro_f1']:.4f}; "
          f"difference {difference['accuracy']:+.4f} {interval_text(paired['accuracy'], signed=True)} and "
          f"{difference['macro_f1']:+.4f} {interval_text(paired['macro_f1'], signed=True)}; paired 95% intervals, "
          f"same {unit}")
    print("  recall difference: " + ", ".join(
        f"{name} {value:+.4f} {interval_text(paired['recall'][name], signed=True)}"
        for name, value in difference["recall"].items()))


def interval_text(bounds: list[float] | None, *, signed: bool = False) -> str:
    """A 95% interval as printed beside its figure.

    Parameters
    ----------
    bounds : list of float, optional
        Low and high; None where the interval is undefined.
    signed : bool, optional
        Print a sign (for differences).

    Returns
    -------
    str
        ``[low, high]``, or ``[-]``.
    """
    if bounds is None:
        return "[-]"
    return f"[{bounds[0]:+.4f}, {bounds[1]:+.4f}]" if signed else f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        no_default = action.default in (None, False, argparse.SUPPRESS) or isinstance(
            action, argparse._StoreConstAction | argparse._CountAction)
        if not action.option_strings or no_default or "default" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose sub-commands (made from it) show each option's default in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def model_folder(reference: str) -> Path:
    """The argparse type of a model argument: the folder the model search path finds (``NAME`` works anywhere).

    Parameters
    ----------
    reference : str
        A folder, or a shipped model's name.

    Returns
    -------
    Path

    Raises
    ------
    argparse.ArgumentTypeError
        Naming where it was looked for.
    """
    try:
        return find_model(reference)
    except ModelNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


MAX_SEED = 2**32 - 1


def integer(low: int, high: int) -> Callable[[str], int]:
    """The argparse type of a whole-number option within ``low..high``.

    Anything else is refused with the range (an unchecked number ended in a traceback far from the option, or in
    hours of work).

    Parameters
    ----------
    low, high : int
        The range, both included.

    Returns
    -------
    callable
        str -> int, raising ``argparse.ArgumentTypeError``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number within {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number within {low}..{high}, got {value}")
        return value

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    """The argparse type of a number option within ``low..high`` (nan and infinity refused).

    Parameters
    ----------
    low, high : float
        The range, both included.

    Returns
    -------
    callable
        str -> float, raising ``argparse.ArgumentTypeError``.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number within {low:g}..{high:g}, got {text!r}") from None
        if not low <= value <= high:  # nan fails every comparison
            raise argparse.ArgumentTypeError(f"expected a number within {low:g}..{high:g}, got {text}")
        return value

    return parse
