"""The gentleclip application, built on the engine in :mod:`gentleclip`: the command line
(:mod:`~gentleclip.app.cli`), run configurations (:mod:`~gentleclip.app.config`), one run end to end
(:mod:`~gentleclip.app.runner`), the benchmarks' grid (:mod:`~gentleclip.app.grid`), hyperparameter
selection on validation data (:mod:`~gentleclip.app.tune`) and result tables and plots
(:mod:`~gentleclip.app.report`). The engine never imports this package."""
