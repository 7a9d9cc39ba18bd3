"""Run report: metrics tables, training curves, example frames and the demo PASS/FAIL line.

``builder.build_report`` is what the workflow's ``report`` rule calls; ``tracking_eval`` holds
the one-call tracking evaluation used by ``evaluate_tracking``. Submodules are imported where
used so that importing this package stays cheap.
"""
