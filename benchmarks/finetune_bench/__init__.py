"""sparseft against mace-torch's own fine-tuning (``mace_run_train``) on real data.

``benchmarks/run.py`` is the entry point (arguments and the loop over data sets); the modules
here each do one job:

- ``config``: paths, budgets per data set, the methods compared (and the magnetic set's trunk
  settings), goal thresholds
- ``util``: logging, atomic file writes, settings hashes
- ``provenance``: machine, software and git state; which sparseft the runs import
- ``process``: one measured training process (epoch timestamps, CPU time, peak RSS)
- ``worker``: the child process that runs one sparseft fine-tune
- ``data``: data-set preparation (split files, forgetting sets) and nested training subsets
- ``inputs``: what a run starts from (E0s, epochs for a training-set size, the scratch model)
- ``sparseft_runner`` / ``mace_runner``: each tool's command or recipe (also the moment-head
  recipe), and reading its outputs
- ``evaluate``: test errors, forgetting and changed weights of a final model
- ``runs``: one cached training run, start to result.json
- ``suite``: every run of one data set (main comparison and learning curves; the magnetic
  runs); cached state
- ``results``: queries over finished runs (best setting per family, learning-curve groups)
- ``report`` / ``report_heads`` / ``formatting``: the markdown report (the magnetic section in its
  own module) and number formatting
- ``plots``: the report's PNG figures (ecemc and domain)
"""
