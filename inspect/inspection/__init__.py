"""wafer-inspect: industrial wafer and PCB defect inspection.

Data flows one way through the stage packages: acquire -> preprocess -> align -> measure -> classify ->
wafermap -> grade -> report. ``pipeline`` wires them from a recipe; ``cli`` is the ``inspect`` command.
"""
