"""The performance report, built from the metrics store (`report.build.build_report`).

The package imports none of its modules: `kura_perf.report.fmt` (or the advisor) is used without loading
the report's figures and pages, and no module of the package imports back through this one.
"""
