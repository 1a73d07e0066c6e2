"""Generators of synthetic images with ground truth: camera frames of wafers and boards with injected defects,
die images, defects drawn into good images. They import only the records (``inspection.types``), so the
simulated camera (``sim:``) sits under acquisition; the line loads them only when a recipe names it."""
