"""Training wafer-map pattern classifiers with the project's training code.

Maps are written as the 8-bit pictures the line's classifier builds (``map_image``), one folder per pattern,
and trained like any labelled folder, with state-preserving augmentation (flips, turns, nearest rotation).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from inspection.classify.card import ModelCard
from inspection.progress import progress
from inspection.report import save_png
from inspection.train.loop import TrainConfig, TrainingError, train
from inspection.wafermap import PATTERNS, MapSet, render_wafer_map
from inspection.wafermap.classify import TASK, map_image


def write_map_folder(folder: Path, *, real: MapSet | None, synthetic_per_pattern: int, size: int, seed: int) -> int:
    """Render the training maps into ``folder/<pattern>/*.png``; returns how many were written."""
    if folder.exists():
        shutil.rmtree(folder)
    jobs: list[tuple[str, str, object]] = []
    if real is not None:
        if real.labels is None:
            raise TrainingError("the map file carries no labels to train on")
        jobs += [(real.label_names[label], f"real_{i:06d}", m) for i, (m, label) in
                 enumerate(zip(real.maps, real.labels.tolist(), strict=True))]
    jobs += [(pattern, f"synthetic_{i:06d}", (pattern, i))
             for pattern in PATTERNS for i in range(synthetic_per_pattern)]
    if not jobs:
        raise TrainingError("nothing to train on: give a labelled map file, --synthetic N, or both")
    for pattern, name, source in progress(jobs, total=len(jobs), label="writing maps"):
        die_map = render_wafer_map(*source, seed=seed) if isinstance(source, tuple) else source
        save_png(folder / pattern / f"{name}.png", map_image(die_map, size=size))  # type: ignore[arg-type]
    return len(jobs)


def train_wafermap(out: Path, *, real: MapSet | None, synthetic_per_pattern: int, img_size: int, epochs: int,
                   seed: int, arch: str, device: str, command: str) -> ModelCard:
    folder = out / "dataset"
    write_map_folder(folder, real=real, synthetic_per_pattern=synthetic_per_pattern, size=img_size, seed=seed)
    config = TrainConfig(folder=folder, out=out, arch=arch, img_size=img_size, epochs=epochs, seed=seed,
                         device=device, good_class=None, augment="states", task=TASK, command=command,
                         patience=max(4, epochs // 3))
    return train(config)
