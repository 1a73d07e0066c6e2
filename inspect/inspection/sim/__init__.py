"""Generators with ground truth: synthetic frames and dies, sample wafer lots (tests, demos, training data)."""
