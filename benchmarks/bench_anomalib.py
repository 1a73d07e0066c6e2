"""anomalib's PatchCore on the anomaly benchmark's split, for the side-by-side in ``benchmarks/README.md``.

Runs in its own environment, never beside the project (anomalib is not a dependency)::

    python3 -m venv /tmp/anomalib-venv
    /tmp/anomalib-venv/bin/pip install anomalib==2.2.0 'torch==2.14.*' 'torchvision==0.29.*' \
        opencv-python-headless requests
    /tmp/anomalib-venv/bin/python benchmarks/bench_anomalib.py --out /tmp/patchcore-maps.npz
    .venv/bin/python benchmarks/bench_anomaly.py --maps /tmp/patchcore-maps.npz   # scores them as ours

PatchCore's memory bank is built from templates (defect-free boards) of the training groups, as our model is
trained; its threshold is chosen on other templates of those groups at 1 false alarm per board, as our card's is.
Nothing can be downloaded here, so the backbone has no ImageNet weights (``pre_trained=False``): the figure is
PatchCore under the same constraint as the project, not PatchCore as published. Maps are written on the
project's 4 px grid (the mean of each cell), scaled so that the chosen threshold is 0.5.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

TRAIN_GROUPS = ("00041", "13000", "20085")
TEST_GROUPS = ("44000", "50600", "77000", "92000")
CELL_PX = 4


def _pairs(root: Path) -> list[tuple[str, Path, Path, np.ndarray, list[int]]]:
    pairs = []
    for line in (root / "trainval.txt").read_text().splitlines():
        image, annotation = line.split()
        name = image.removesuffix(".jpg")
        rows = [list(map(int, row.replace(",", " ").split())) for row in (root / annotation).read_text().splitlines()
                if row.strip()]
        boxes = np.array([row[:4] for row in rows], float).reshape(-1, 4)
        pairs.append((name.split("/")[0].removeprefix("group"), root / f"{name}_test.jpg", root / f"{name}_temp.jpg",
                      boxes, [row[4] for row in rows]))
    return pairs


def _input(path: Path) -> np.ndarray:
    """The grey board as PatchCore's 1 x 3 x H x W input, ImageNet-normalised as anomalib does."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(((grey[..., None] - mean) / std).transpose(2, 0, 1))[None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--bank-images", type=int, default=100, help="training-group templates in the memory bank")
    parser.add_argument("--threshold-images", type=int, default=50, help="other templates to choose the threshold")
    parser.add_argument("--coreset", type=float, default=0.005, help="share of patch embeddings kept")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch  # anomalib's environment, never the project's
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    torch.set_num_threads(2)
    pairs = _pairs(args.data)
    train = [p for p in pairs if p[0] in TRAIN_GROUPS]
    test = [p for p in pairs if p[0] in TEST_GROUPS]
    order = np.random.default_rng(0).permutation(len(train))
    bank = [train[i] for i in order[: args.bank_images]]
    held = [train[i] for i in order[args.bank_images : args.bank_images + args.threshold_images]]
    model = PatchcoreModel(layers=["layer2", "layer3"], backbone=args.backbone, pre_trained=False)
    model.train()
    started = time.perf_counter()
    with torch.no_grad():
        for _, _, template, _, _ in bank:
            model(torch.from_numpy(_input(template)))
    model.subsample_embedding(args.coreset)
    fit_s = time.perf_counter() - started
    model.eval()

    def score(path: Path) -> np.ndarray:
        with torch.no_grad():
            full = model(torch.from_numpy(_input(path))).anomaly_map[0, 0].numpy()
        height, width = full.shape
        return full.reshape(height // CELL_PX, CELL_PX, width // CELL_PX, CELL_PX).mean(axis=(1, 3))

    held_maps = [score(p[2]) for p in held]
    started = time.perf_counter()
    defect_maps = [score(p[1]) for p in test]
    ms_per_image = 1000.0 * (time.perf_counter() - started) / len(test)
    good_maps = [score(p[2]) for p in test]
    # The threshold at 1 region per held-out good board, found on a fine grid of raw scores.
    raw = np.quantile(np.concatenate([m.ravel() for m in held_maps]), np.linspace(0.9, 1.0, 2001))
    chosen = raw[-1]
    for level in raw:
        count = np.mean([cv2.connectedComponents((m >= level).astype(np.uint8), connectivity=8)[0] - 1
                         for m in held_maps])
        if count <= 1.0:
            chosen = level
            break

    def scaled(maps: list[np.ndarray]) -> np.ndarray:
        return np.stack([m / (m + chosen) for m in maps]).astype(np.float32)  # chosen -> 0.5, monotone

    np.savez_compressed(args.out, defect_maps=scaled(defect_maps), good_maps=scaled(good_maps),
                        test_names=np.array([str(p[1]) for p in test]), ms_per_image=ms_per_image, fit_s=fit_s,
                        backbone=args.backbone, bank_images=len(bank), coreset=args.coreset,
                        memory_bank=model.memory_bank.shape[0], threshold_raw=float(chosen),
                        torch=torch.__version__)
    print(f"PatchCore ({args.backbone}, no pretrained weights): bank {model.memory_bank.shape[0]} from {len(bank)} "
          f"boards in {fit_s:.0f} s; {ms_per_image:.0f} ms a board; maps: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
