"""The bottom layer: what every other layer may use, and nothing that imports them.

errors (what a user can act on, and how an error reads in one line), masking (no
password in anything tuner writes), exits (ending a process, and how an exit status
reads), results (how a trial ended, as slots report it), attrs (the names of the user
attributes tuner keeps on Optuna studies and trials) and quiet (keeping libraries'
console chatter down).

Subpackages keep their ``__init__`` free of imports: importing one module must not
pull in torch, Lightning or MLflow through a sibling (``tuner --help`` stays quick).
"""
