"""The pages tuner writes for people to read: a study's report and a comparison of studies.

Each is one self-contained HTML file (tuner.app.pages.html) rendered from a template in
``dashboards/``, with interactive plots from Optuna's plotly visualisations.
"""
