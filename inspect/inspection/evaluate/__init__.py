"""Evaluation: classification and detection metrics with bootstrap intervals, and the evaluations of a
classifier on a labelled folder, a wafer-map model on labelled maps and a PCB chain on annotated pairs."""
