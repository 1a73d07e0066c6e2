"""One chain of stages built from a recipe, and its three runners.

- :mod:`inspection.chain.chain`: the :class:`~inspection.chain.chain.Chain` a recipe asks for (its stages,
  its models, its micro-batcher) and :func:`~inspection.chain.chain.build_chain`;
- :mod:`inspection.chain.line`: the line loop of ``inspect run`` (camera frames, bounded threads, writer);
- :mod:`inspection.chain.lot`: lot grading of ``inspect grade`` (wafer images, process pool or Ray);
- :mod:`inspection.chain.pairs`: PCB template/test pairs of ``inspect pcb`` (inspection and the DeepPCB metric).
"""
