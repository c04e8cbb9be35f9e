"""Scheduled tuning jobs: `tuner sweep` re-run on a cron timetable by `tuner schedule run`.

The jobs live in a plain YAML file a user can read and edit (:mod:`.jobs`); when each is
due comes from croniter (:mod:`.timetable`); which configs a job may use is the rule in
:mod:`.confinement`; what ran and how it ended is in a state file (:mod:`.state`) that only
the scheduler loop (:mod:`.runner`) writes.
"""
