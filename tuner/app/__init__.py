"""The commands: one module per thing a user runs, each a readable sequence of steps.

sweep and worker (drivers, sharing driver), finish (the end of a sweep's records, and
``tuner sync``), report (champion, leaderboard and the HTML report), records (reading a
study back: ``tuner best``, ``ui``, ``serve``), ui (the MLflow UI and model server),
progress (what a sweep shows while it runs), warmup (the driver's first-use costs) and
schedule (``tuner schedule``: re-tuning in rounds on a timetable, each round's champion
measured on that round's data). The CLI (tuner.cli) parses
arguments and calls these.
"""
