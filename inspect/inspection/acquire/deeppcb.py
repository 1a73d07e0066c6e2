"""The DeepPCB layout: a list of template/test pairs with their annotated defect boxes.

Each list line is ``groupG/G/NNNNNNNN.jpg groupG/G_not/NNNNNNNN.txt``; the image named there does not exist
literally: ``_test`` (the board to inspect) or ``_temp`` (its golden template) goes before ``.jpg``. An
annotation line is ``x1 y1 x2 y2 type`` with type 1 open, 2 short, 3 mousebite, 4 spur, 5 copper, 6 pin-hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.types import InspectionError

DEEPPCB_TYPES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")


class PairListError(InspectionError, ValueError):
    """A pair list or annotation that does not follow the DeepPCB layout; the message names file and line."""


@dataclass(frozen=True)
class PcbPair:
    name: str
    """The list's image entry without extension, e.g. ``group20085/20085/20085000``."""
    group: str
    test_path: Path
    template_path: Path
    boxes: np.ndarray
    """N x 4 float (x1, y1, x2, y2) in pixels."""
    kinds: tuple[str, ...]


def read_annotation(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Boxes and defect types of one annotation file; errors name the file, line and value."""
    boxes, kinds = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PairListError(f"{path}: cannot read the annotation ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.replace(",", " ").split()
        try:
            x1, y1, x2, y2, kind = (int(field) for field in fields)
        except ValueError:
            raise PairListError(f"{path}:{number}: expected 'x1 y1 x2 y2 type' (5 integers), got {line!r}") from None
        if not 1 <= kind <= len(DEEPPCB_TYPES):
            raise PairListError(f"{path}:{number}: defect type {kind} is not one of 1..{len(DEEPPCB_TYPES)} "
                                   f"({', '.join(DEEPPCB_TYPES)})")
        if x2 <= x1 or y2 <= y1:
            raise PairListError(f"{path}:{number}: box ({x1}, {y1}, {x2}, {y2}) is empty")
        boxes.append((x1, y1, x2, y2))
        kinds.append(DEEPPCB_TYPES[kind - 1])
    return np.array(boxes, float).reshape(-1, 4), tuple(kinds)


def read_pair_list(root: str | Path, list_file: str | Path) -> list[PcbPair]:
    """Every pair of ``list_file`` (paths relative to ``root``), checked to exist."""
    root, list_file = Path(root), Path(list_file)
    if not list_file.is_file() and (root / list_file).is_file():
        list_file = root / list_file
    try:
        lines = list_file.read_text().splitlines()
    except OSError as exc:
        raise PairListError(f"{list_file}: cannot read the pair list ({exc.strerror})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].endswith(".jpg"):
            raise PairListError(f"{list_file}:{number}: expected 'IMAGE.jpg ANNOTATION.txt', got {line!r}")
        name = fields[0].removesuffix(".jpg")
        test_path, template_path = root / f"{name}_test.jpg", root / f"{name}_temp.jpg"
        for path in (test_path, template_path):
            if not path.is_file():
                raise PairListError(f"{list_file}:{number}: {path} does not exist")
        boxes, kinds = read_annotation(root / fields[1])
        pairs.append(PcbPair(name, name.split("/")[0].removeprefix("group"), test_path, template_path, boxes, kinds))
    if not pairs:
        raise PairListError(f"{list_file}: the pair list is empty")
    return pairs


def per_product_split(pairs: list[PcbPair], *, seed: int = 0, max_good_images: int = 50
                      ) -> dict[str, tuple[list[PcbPair], list[PcbPair]]]:
    """The per-product protocol's split of each group (a product): good boards to train on, and boards to test.

    The group's pairs are shuffled by ``seed`` and halved. The templates of the first half (at most
    ``max_good_images`` of them, in shuffled order) are the product's good images; the second half's defective
    boards (and their templates, as unseen good boards) are the test, so the test shows positions of the board
    the model never saw.

    Parameters
    ----------
    pairs : list of PcbPair
        Pairs of one or more groups.
    seed : int
        Seeds the shuffle.
    max_good_images : int
        The most good images a product's model is trained from.

    Returns
    -------
    dict
        Group -> (pairs whose templates are the good images, pairs to test in list order), groups sorted.

    Raises
    ------
    PairListError
        A group with fewer than 4 pairs (no half can both train and test).
    """
    split: dict[str, tuple[list[PcbPair], list[PcbPair]]] = {}
    for group in sorted({pair.group for pair in pairs}):
        mine = [pair for pair in pairs if pair.group == group]
        if len(mine) < 4:
            raise PairListError(f"group {group}: {len(mine)} pairs; the per-product split needs at least 4 (half "
                                "to train on, half to test)")
        order = np.random.default_rng(seed).permutation(len(mine))
        half = len(mine) // 2
        split[group] = ([mine[i] for i in order[:half][:max_good_images]], [mine[i] for i in np.sort(order[half:])])
    return split
