"""Processes that train: the slots a driver starts, and the ranks of a DDP trial.

protocol (what the driver and a slot say over the pipe), slot (the process that claims
and trains trials one after another), pool (the driver's side: start, watch, replace),
startup (check the services, then start the slots), ddp (a trial on several processes,
started from a slot), rank (one of those processes) and torchrun (the ranks when
torchrun or srun started them on several machines). The driver imports this layer
without torch: what it touches is pickled messages and processes.
"""
