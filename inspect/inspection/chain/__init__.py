"""One chain of stages built from a recipe, and its three runners.

- :mod:`inspection.chain.chain`: the chain a recipe asks for (its stages, its models, its micro-batchers):
  :class:`~inspection.chain.chain.PartChain` (``wafer-die``, ``pcb``) from
  :func:`~inspection.chain.chain.build_chain`, :class:`~inspection.chain.chain.WaferChain` (``wafer-lot``) from
  :func:`~inspection.chain.chain.build_wafer_chain`, and the typed records their stages pass on;
- :mod:`inspection.chain.line`: the line loop of ``inspect run`` (camera frames, bounded threads, writer);
- :mod:`inspection.chain.lot`: lot grading of ``inspect grade`` (wafer images, process pool or Ray);
- :mod:`inspection.chain.pairs`: PCB template/test pairs of ``inspect pcb`` (their scoring is in ``evaluate``);
- :mod:`inspection.chain.crops`: a station's candidates cut into a folder to label (``inspect labels cut``).
"""
