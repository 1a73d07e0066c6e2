"""Where a model named by a recipe or a command is found, so that every default works from any folder.

A relative reference (``models/wafer-line-patchnet-v1`` as the bundled recipes write it, or just
``wafer-line-patchnet-v1``) is looked for, in order:

1. beside the recipe that names it (its folder);
2. in the working directory;
3. in each folder of ``$WAFER_INSPECT_MODELS`` (``os.pathsep``-separated), by the model's name;
4. in the user's models folder (``$XDG_DATA_HOME/wafer-inspect/models``, by default
   ``~/.local/share/wafer-inspect/models``), by name;
5. among the models installed with the package (``inspection.bundled_models``: the shipped models' files in
   a wheel, a link to the repository's ``models/`` in a checkout), by name.

The first folder that holds a model card (``model.json``) or a classical wafer-map model (``classical.npz``)
wins; when none does, the error lists every place that was looked at.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from inspection.types import InspectionError

MODELS_ENV = "WAFER_INSPECT_MODELS"
_MODEL_FILES = ("model.json", "classical.npz")


class ModelNotFoundError(InspectionError, FileNotFoundError):
    """No folder on the search path holds the model; the message lists where it looked."""


def user_models_folder() -> Path:
    """``$XDG_DATA_HOME/wafer-inspect/models`` (``~/.local/share/wafer-inspect/models`` by default)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "wafer-inspect" / "models"


def bundled_models_folder() -> Path | None:
    """The shipped models: inside an installed wheel, or the ``models/`` folder of a source checkout."""
    # ``inspection/bundled_models`` is a link to the repository's ``models/`` in a checkout (and an editable
    # install); a wheel carries the shipped models' files there.
    spec = importlib.util.find_spec("inspection.bundled_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations and Path(locations[0]).is_dir() else None


def search_folders(*, recipe_folder: Path | None = None) -> list[tuple[Path, bool]]:
    """The folders looked in, in order, each with whether the reference is taken as written there (True: the
    recipe's folder and the working directory) or by the model's name only (False)."""
    folders = [(recipe_folder, True)] if recipe_folder is not None else []
    folders.append((Path.cwd(), True))
    folders += [(Path(entry), False) for entry in os.environ.get(MODELS_ENV, "").split(os.pathsep) if entry]
    folders.append((user_models_folder(), False))
    bundled = bundled_models_folder()
    if bundled is not None:
        folders.append((bundled, False))
    return folders


def _is_model(folder: Path) -> bool:
    try:
        return folder.is_dir() and any((folder / name).is_file() for name in _MODEL_FILES)
    except OSError:  # a name too long for the file system: no model there
        return False


def find_model(reference: str | Path, *, recipe_folder: Path | None = None) -> Path:
    """The model folder a reference names, from the search path.

    Parameters
    ----------
    reference : str or Path
        An absolute folder, or a relative one (``models/NAME`` or ``NAME``).
    recipe_folder : Path, optional
        The folder of the recipe that names the model, looked in first.

    Returns
    -------
    Path
        An existing model folder (holding ``model.json`` or ``classical.npz``), absolute.

    Raises
    ------
    ModelNotFoundError
        Listing every folder that was looked at.
    """
    reference = Path(reference)
    if reference.is_absolute():
        if _is_model(reference):
            return reference
        raise ModelNotFoundError(f"{reference}: no model there (a model folder holds model.json)")
    tried = []
    for folder, as_written in search_folders(recipe_folder=recipe_folder):
        candidate = folder / (reference if as_written else reference.name)
        if _is_model(candidate):
            return candidate.resolve()
        tried.append(str(candidate))
    raise ModelNotFoundError(f"model {str(reference)!r} not found; looked in: {', '.join(tried)} (set "
                             f"{MODELS_ENV} to a folder of models, or give the model's folder)")


def installed_models() -> list[tuple[str, Path]]:
    """(name, folder) of every model on the search path's shared folders (not the recipe's or the working
    directory's), the first of each name."""
    found: dict[str, Path] = {}
    for folder, as_written in search_folders():
        if as_written or not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            if _is_model(candidate):
                found.setdefault(candidate.name, candidate)
    return sorted(found.items())
