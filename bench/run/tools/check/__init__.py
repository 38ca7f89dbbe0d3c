"""`bench check`: the CI regression check of the model zoo's math.

Every activation (models.ACTIVATIONS) x every scheme (models.SCHEMES) with and without GPAS
(post+gpas, a harness extension, included) is trained at the ``nano`` scale on CPU for a few dozen
steps through a bare in-process loop built from the harness's own pieces (Transformer, the builders'
optimizer and schedule, lm_loss), on fixed real text. Per cell it records exact parameter counts,
the loss and the global gradient norm at init and at a perturbed init (one forward and backward, no
update: pure math), at a few steps and at the last step, and the loss on a fixed held-out batch after
training, and compares them with the committed baseline (configs/baselines/check-nano.json): counts
exactly, the rest within the baseline's tolerances. ``untrained`` checks the pure-math numbers only,
in seconds.

cells.py: which cells and settings; train.py: one cell and the workers; compare.py: tolerances and
the comparison; calibrate.py: tolerances from the spread across emulated environments; baseline.py:
the file; report.py: the table and summary; run.py: options to exit code. See docs/check.md.
"""
