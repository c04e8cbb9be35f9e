"""The driver decides, slots train: a trial's path between processes.

driver (the driver's side of each trial: claim, sample, run, order, outcome, tell, end),
strategy (what the next free slot trains), run_writer (the driver's MLflow writer
thread), protocol (what the driver and a slot say over the pipe), pool (the slot
processes: forked cheaply, watched, replaced), slot (the process that trains what it is
ordered), driver_line (a slot's end of the pipe), orphan (a slot whose driver died),
in_process (a slot in the driver's own process, under torchrun), startup (check the
services, then start the slots), ddp (a trial on several processes, started from a
slot), rank (one of those processes) and torchrun (the ranks when torchrun or srun
started them on several machines). The driver imports this layer without torch.
"""
