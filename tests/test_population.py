"""Population-based training (strategy=pbt): explore, the population's decisions, the
learning rate a child trains with, and whole sweeps (lineage, a kill and a rerun)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import (
    client_for,
    load_study,
    plan,
    run_tuner,
    tuner_command,
    tuner_here,
    wait_until_gone,
)
from tuner.config.population import Population
from tuner.core import attrs
from tuner.core.errors import ConfigError
from tuner.study.explore import draw, explore, perturb
from tuner.study.population import decide, place
from tuner.study.retries import cut_short
from tuner.tracking import tags

PBT = ("strategy=pbt", "strategy.population=4", "trainer.max_epochs=6", "slots=2",
       "tracking.report=false")  # 4 members x 3 generations of 2 epochs: 12 segments

# -- explore ---------------------------------------------------------------------------------


def test_explore_stays_inside_the_space_on_its_scale():
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    assert perturb(0.05, lr, 1.2) == pytest.approx(0.06)
    assert perturb(0.09, lr, 1.2) == 0.1  # clamped to the bound
    assert perturb(2e-4, lr, 0.8) == pytest.approx(1.6e-4)
    width = IntDistribution(32, 256, step=32)
    assert perturb(64, width, 1.2) == 96  # 76.8 rounds back to 64: at least one step
    assert perturb(64, width, 0.8) == 32
    assert perturb(256, width, 1.2) == 256
    layers = IntDistribution(1, 4)
    assert perturb(1, layers, 1.2) == 2 and perturb(1, layers, 0.8) == 1
    stepped = FloatDistribution(0.0, 0.5, step=0.1)
    assert perturb(0.3, stepped, 1.2) == pytest.approx(0.4)
    rng = random.Random(0)
    drawn = [draw(lr, rng) for _ in range(2000)]
    assert all(1e-4 <= v <= 1e-1 for v in drawn)
    # log-uniform: as many draws below 1e-2.5 as above (uniform would put 97% above)
    below = sum(v < 10 ** -2.5 for v in drawn) / len(drawn)
    assert 0.45 < below < 0.55


def test_explore_perturbs_or_resamples_only_the_mutable_keys():
    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True),
             "opt": CategoricalDistribution(["sgd", "adam"]),
             "width": IntDistribution(32, 256, step=32)}
    values = {"lr": 0.01, "opt": "adam", "width": 64}
    ops = Counter()
    for seed in range(200):
        out, op, how = explore(values, space, ["lr"], random.Random(seed), (0.8, 1.2), 0.25)
        ops[op] += 1
        assert how == {"lr": "resampled" if op == "resample" else
                       ("x0.8" if out["lr"] < 0.01 else "x1.2")}
        assert out["opt"] == "adam" and out["width"] == 64
        if op == "perturb":
            assert out["lr"] == pytest.approx(0.008) or out["lr"] == pytest.approx(0.012)
        else:
            assert 1e-4 <= out["lr"] <= 1e-1
    assert 30 < ops["resample"] < 75  # a quarter of 200
    same = [explore(values, space, ["lr"], random.Random(7), (0.8, 1.2), 0.25)
            for _ in range(2)]
    assert same[0] == same[1]  # seeded: a decision made again is the same decision


# -- the population's decisions --------------------------------------------------------------

POP = Population(size=4, interval=2, generations=3, quantile=0.25, resample=0.0,
                 factors=(0.8, 1.2), mutable=("lr",))
SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _segment(study, member, generation, value, state=TrialState.COMPLETE, lr=0.01, **more):
    user = {**place(member, generation, POP), **more}
    if state == TrialState.COMPLETE:
        user[attrs.PBT_END_SHA_ATTR] = f"sha-{member}-{generation}"
    study.add_trial(create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"lr": lr}, distributions=SPACE, user_attrs=user))


def _decide(study):
    return decide(study.get_trials(deepcopy=False), POP, SPACE, True, 0,
                  lambda n: f"ckpt/{n}")


def test_the_bottom_member_copies_a_top_one_and_the_rest_keep_their_own():
    study = optuna.create_study(direction="maximize")
    assert _decide(study).fresh_member == 0
    for member, value in enumerate([0.9, 0.5, 0.7, 0.2]):
        _segment(study, member, 0, value, lr=0.01 * (member + 1))
    decision = _decide(study)
    assert decision.stop is None and len(decision.enqueue) == 4
    by_member = {s.user_attrs[attrs.PBT_MEMBER_ATTR]: s for s in decision.enqueue}
    for member in (0, 1, 2):  # not in the bottom quarter: continue their own checkpoint
        kept = by_member[member]
        assert kept.user_attrs[attrs.PBT_OP_ATTR] == "keep"
        assert kept.user_attrs[attrs.PBT_PARENT_ATTR] == member
        assert kept.params == {"lr": 0.01 * (member + 1)}
    copied = by_member[3]  # the worst copies the best (the top quarter is one member)
    assert copied.user_attrs[attrs.PBT_PARENT_ATTR] == 0
    assert copied.user_attrs[attrs.PBT_CHECKPOINT_ATTR] == "ckpt/0"
    assert copied.user_attrs[attrs.PBT_CHECKPOINT_SHA_ATTR] == "sha-0-0"
    assert copied.user_attrs[attrs.PBT_OP_ATTR] == "perturb"
    assert copied.user_attrs[attrs.PBT_EXPLORED_ATTR] in ({"lr": "x0.8"}, {"lr": "x1.2"})
    assert copied.params["lr"] in (pytest.approx(0.008), pytest.approx(0.012))
    assert copied.user_attrs[attrs.PBT_EPOCHS_ATTR] == [2, 4]
    assert decision == _decide(study)  # the same study: the same decision


def test_a_round_never_hangs_on_a_dead_or_failed_member():
    study = optuna.create_study(direction="maximize")
    for member, value in enumerate([0.9, 0.5, 0.7]):
        _segment(study, member, 0, value)
    _segment(study, 3, 0, None, state=TrialState.RUNNING)
    assert _decide(study).enqueue == [] and _decide(study).stop is None  # wait for it
    # Its process died: reaped as cut short, it is repeated with the same values.
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.05},
                                 distributions=SPACE, user_attrs={
                                     **place(3, 0, POP), attrs.ATTEMPT_ATTR: 2,
                                     attrs.FAIL_REASON_ATTR: "abandoned: its process died"}))
    assert cut_short(study.trials[-1])
    [repeat] = _decide(study).enqueue
    assert repeat.params == {"lr": 0.05}
    assert repeat.user_attrs[attrs.PBT_MEMBER_ATTR] == 3
    assert repeat.user_attrs[attrs.ATTEMPT_ATTR] == 3
    # Its repeat fails on its own: it is not scored, and copies a top member next.
    _segment(study, 3, 0, None, state=TrialState.FAIL, **{attrs.ATTEMPT_ATTR: 3,
             attrs.FAIL_REASON_ATTR: "RuntimeError: shapes"})
    by_member = {s.user_attrs[attrs.PBT_MEMBER_ATTR]: s for s in _decide(study).enqueue}
    assert by_member[3].user_attrs[attrs.PBT_PARENT_ATTR] == 0
    # Of the three scored (0.9, 0.7, 0.5), the bottom one copies too; the others keep.
    assert by_member[1].user_attrs[attrs.PBT_PARENT_ATTR] == 0
    assert [by_member[m].user_attrs[attrs.PBT_OP_ATTR] for m in (0, 2)] == ["keep", "keep"]


def test_a_segment_killed_while_it_sampled_is_repeated_with_all_its_decided_values():
    """Killed after sampling one of its values: the repeat gets the rest from its
    decision (a value drawn afresh, a width say, would not fit its parent's weights)."""
    study = optuna.create_study(direction="maximize")
    for member, value in enumerate([0.9, 0.5, 0.7, 0.2]):
        _segment(study, member, 0, value)
    space = {**SPACE, "width": IntDistribution(32, 256, step=32)}
    study.add_trial(create_trial(
        state=TrialState.FAIL, params={"lr": 0.02}, distributions={"lr": SPACE["lr"]},
        system_attrs={"fixed_params": {"lr": 0.02, "width": 128}},
        user_attrs={**place(1, 1, POP), attrs.PBT_PARENT_ATTR: 0,
                    attrs.FAIL_REASON_ATTR: "abandoned: its process died"}))
    [repeat] = decide(study.get_trials(deepcopy=False), POP, space, True, 0,
                      lambda n: f"ckpt/{n}").enqueue
    assert repeat.params == {"lr": 0.02, "width": 128}
    assert repeat.user_attrs[attrs.PBT_PARENT_ATTR] == 0


def test_a_generation_half_enqueued_is_completed_and_the_last_one_stops():
    study = optuna.create_study(direction="maximize")
    for member, value in enumerate([0.9, 0.5, 0.7, 0.2]):
        _segment(study, member, 0, value)
    full = {s.user_attrs[attrs.PBT_MEMBER_ATTR]: s for s in _decide(study).enqueue}
    for member in (0, 1):  # the decider died after enqueuing two of the four
        study.enqueue_trial(full[member].params, user_attrs=full[member].user_attrs)
    rest = _decide(study).enqueue
    assert [s.user_attrs[attrs.PBT_MEMBER_ATTR] for s in rest] == [2, 3]
    assert rest == [full[2], full[3]]
    for generation in (1, 2):
        for member in range(4):
            _segment(study, member, generation, 0.5)
    assert _decide(study).stop == "budget"


def test_two_drivers_deciding_at_once_fork_each_member_once(tmp_path):
    """Two machines' drivers (two strategies over one study, claiming from threads at
    once): each generation is decided once, under the study's lock."""
    import threading

    from tuner.launch.population import PopulationStrategy
    from tuner.study.storage import open_storage
    from tuner.study.studies import open_study

    sweep = plan(*PBT, run_dir=tmp_path / "runs")
    sweep.run_dir.mkdir(parents=True)
    study = open_study(sweep, open_storage(sweep.cfg.storage))
    distributions = {p.path: p.distribution for p in sweep.space.params}
    for member in range(4):  # generation 0 has ended
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=0.5 + member / 10,
            params={"model.lr": 0.01}, distributions={"model.lr": distributions["model.lr"]},
            user_attrs={**place(member, 0, sweep.population),
                        attrs.PBT_END_SHA_ATTR: f"sha-{member}"}))
    drivers = [PopulationStrategy(sweep, open_study(sweep, open_storage(sweep.cfg.storage)),
                        lambda trial, reason: None) for _ in range(2)]
    claims: list = []

    def claim(driver) -> None:
        for _ in range(3):
            claims.append(driver.next_trial(os.getpid()))

    threads = [threading.Thread(target=claim, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    taken = [c.trial for c in claims if c.trial is not None]
    assert len(taken) == 4 and sum(c.wait for c in claims) == 2  # then: wait for them
    children = [t for t in load_study(sweep.run_dir).trials
                if t.user_attrs.get(attrs.PBT_GENERATION_ATTR) == 1]
    assert sorted(t.user_attrs[attrs.PBT_MEMBER_ATTR] for t in children) == [0, 1, 2, 3]


# -- the learning rate a child trains with ----------------------------------------------------


def test_a_child_trains_with_its_own_learning_rate_not_its_parents(tmp_path):
    """Lightning restores the parent's param_groups on fit(ckpt_path=...); the child's
    values must be what the optimizer uses, a schedule keeping its place."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tuner.trial.order import SegmentOrder
    from tuner.trial.segment import AdoptHyperparameters, SegmentEnd

    class Halving(pl.LightningModule):  # lr halves every epoch; weight decay searched too
        def __init__(self, lr, weight_decay):
            super().__init__()
            self.lr, self.weight_decay, self.layer = lr, weight_decay, torch.nn.Linear(3, 1)

        def training_step(self, batch, _):
            x, y = batch
            return ((self.layer(x) - y) ** 2).mean()

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.lr,
                                    weight_decay=self.weight_decay)
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e),
                "interval": "epoch"}}

    class Used(pl.Callback):
        def __init__(self):
            self.seen = {}

        def on_train_batch_start(self, trainer, module, batch, index):
            group = trainer.optimizers[0].param_groups[0]
            self.seen.setdefault(trainer.current_epoch, (group["lr"], group["weight_decay"]))

    data = DataLoader(TensorDataset(torch.randn(32, 3), torch.randn(32, 1)), batch_size=8)

    def segment(lr, weight_decay, start, end, parent=None):
        used = Used()
        order = SegmentOrder(start, end, tmp_path / f"end-{end}.ckpt", parent)
        callbacks = [SegmentEnd(order), used, *([AdoptHyperparameters()] if parent else [])]
        trainer = pl.Trainer(max_epochs=6, callbacks=callbacks, logger=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False)
        trainer.fit(Halving(lr, weight_decay), data, ckpt_path=parent, weights_only=True)
        return used.seen, trainer.current_epoch, order.end_checkpoint

    seen, epoch, parent = segment(0.1, 0.01, 0, 2)
    assert epoch == 2 and parent.is_file()
    assert seen[0] == (0.1, 0.01) and seen[1] == (pytest.approx(0.05), 0.01)
    seen, epoch, _ = segment(0.4, 0.03, 2, 4, parent=parent)
    assert epoch == 4
    # Epoch 2 of the schedule: the child's peak times 0.5 ** 2, with its own weight decay.
    assert seen[2] == (pytest.approx(0.4 * 0.25), 0.03)
    assert seen[3] == (pytest.approx(0.4 * 0.125), 0.03)


# -- whole sweeps ------------------------------------------------------------------------------


def _segments(run_dir):
    return [t for t in load_study(run_dir).trials if attrs.PBT_MEMBER_ATTR in t.user_attrs]


def _segments_so_far(run_dir):
    """The segments of a sweep that is starting: none while its journal or its study does
    not exist yet (the run folder comes before both)."""
    try:
        return _segments(run_dir)
    except (KeyError, FileNotFoundError, ValueError):
        return []


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """One PBT sweep (4 members x 3 generations), its report written: its folder and
    the command's output."""
    cwd = tmp_path_factory.mktemp("population")
    result = run_tuner("sweep", *PBT, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd, result.stdout


def test_a_population_of_four_over_three_generations_records_its_lineage(population):
    cwd, output = population
    assert "study digits-mlp: 12 trials (a population of 4, 3 segments of 2 epochs" in output
    assert "schedule (the winner's lineage, generation 0 first):" in output
    run_dir = cwd / "runs"
    trials = load_study(run_dir).trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    places = sorted((t.user_attrs[attrs.PBT_GENERATION_ATTR], t.user_attrs[attrs.PBT_MEMBER_ATTR])
                    for t in trials)
    assert places == [(g, m) for g in range(3) for m in range(4)]
    for t in trials:
        generation = t.user_attrs[attrs.PBT_GENERATION_ATTR]
        assert t.user_attrs[attrs.PBT_EPOCHS_ATTR] == [2 * generation, 2 * generation + 2]
        # Optuna holds the segment's epochs, on the member's epoch axis
        assert sorted(t.intermediate_values) == [2 * generation + 1, 2 * generation + 2]
        if generation:
            parent = trials[t.user_attrs[attrs.PBT_PARENT_ATTR]]
            assert parent.user_attrs[attrs.PBT_GENERATION_ATTR] == generation - 1
            op = t.user_attrs[attrs.PBT_OP_ATTR]
            assert op in ("keep", "perturb", "resample")
            if op == "keep":
                assert t.params == parent.params
            else:  # a copy: what it cannot mutate is its parent's
                assert t.params["model.width"] == parent.params["model.width"]
    assert any(t.user_attrs.get(attrs.PBT_OP_ATTR) in ("perturb", "resample") for t in trials)
    # MLflow: one run per segment, tagged with its place, its lr as a metric per epoch
    client = client_for(run_dir)
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in client.search_runs(
        [client.get_experiment_by_name("digits-mlp").experiment_id])
        if r.data.tags.get(tags.ROLE) == "trial"}
    assert len(runs) == 12
    for t in trials:
        run = runs[str(t.number)]
        generation = t.user_attrs[attrs.PBT_GENERATION_ATTR]
        assert run.data.tags[tags.PBT_MEMBER] == str(t.user_attrs[attrs.PBT_MEMBER_ATTR])
        assert run.data.tags[tags.PBT_EPOCHS] == f"{2 * generation + 1}-{2 * generation + 2}"
        history = client.get_metric_history(run.info.run_id, "hp/model.lr")
        assert [(m.step, m.value) for m in history] == [
            (2 * generation + 1, pytest.approx(t.params["model.lr"])),
            (2 * generation + 2, pytest.approx(t.params["model.lr"]))]
        if generation:
            parent = trials[t.user_attrs[attrs.PBT_PARENT_ATTR]]
            assert run.data.tags[tags.PBT_PARENT_RUN] == parent.user_attrs[attrs.RUN_ID_ATTR]
    # Only the best segment's checkpoint is left; the champion is the best segment.
    left = sorted(run_dir.glob("trials/digits-mlp/*/*.ckpt"))
    best = load_study(run_dir).best_trial
    assert [p.relative_to(run_dir).as_posix() for p in left] == [
        f"trials/digits-mlp/{best.number}/segment.ckpt"]
    assert f"champion: promoted to models:/digits-mlp@champion (version 1, trial {best.number})" \
        in output
    shown = tuner_here("best", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    assert f"best trial {best.number}:" in shown.stdout
    lines = shown.stdout.split("schedule (the winner's lineage, generation 0 first):\n")[1]
    steps = [line for line in lines.splitlines() if line.startswith("  epochs ")]
    assert len(steps) == best.user_attrs[attrs.PBT_GENERATION_ATTR] + 1
    assert steps[-1].startswith(f"  epochs {2 * len(steps) - 1}-{2 * len(steps)}: "
                                f"trial {best.number} ")


def test_the_replay_of_the_winners_lineage_reaches_the_sweeps_values_exactly(population):
    cwd, _ = population
    run_dir = cwd / "runs"
    best = load_study(run_dir).best_trial
    result = run_tuner("replay", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    generations = best.user_attrs[attrs.PBT_GENERATION_ATTR] + 1
    assert f"replaying trial {best.number}'s lineage: {generations} segment(s)" in result.stdout
    assert result.stdout.count(", the same)") == generations, result.stdout
    assert (f"trial {best.number} replayed: {best.value:.6g}; the sweep recorded "
            f"{best.value:.6g}: reproduced exactly") in result.stdout
    refused = run_tuner("replay", "--trial", "99", cwd=cwd)
    assert refused.returncode == 2 and "the study has no trial 99" in refused.stderr


def test_the_report_draws_the_population_with_the_winners_lineage(population):
    from tests.browser import WatchedPage, chromium, wait_for_plots

    cwd, _ = population
    result = tuner_here("report", "--out", "report.html", cwd=cwd)
    assert result.returncode == 0, result.stderr
    with chromium() as browser:
        page = WatchedPage(browser, width=1100)
        page.page.goto((cwd / "report.html").as_uri())
        assert wait_for_plots(page.page) != "error", page.errors
        figure = page.page.locator(
            "figure:has(figcaption:has-text('Population: who copied whom'))")
        assert figure.count() == 1
        figure.scroll_into_view_if_needed()
        # 12 segments, the three lines' legend entries, the winner's line drawn
        assert figure.locator(".scatterlayer .point").count() == 12
        legend = figure.locator(".legendtext").all_text_contents()
        assert {"continued", "the winner"} <= set(legend), legend
        figure.screenshot(path=str(page.screenshot("pbt-population").with_name(
            "pbt-population-figure.png")))
        best = load_study(cwd / "runs").best_trial
        rows = page.page.locator("li:has-text('Schedule') table tr")
        assert rows.count() == best.user_attrs[attrs.PBT_GENERATION_ATTR] + 2  # and a header
        assert not page.errors, page.errors


def test_a_sweep_killed_mid_generation_finishes_on_rerun_with_nothing_trained_twice(tmp_path):
    args = [*PBT, "tracking.log_models=false"]
    process = subprocess.Popen([*tuner_command(), "sweep", *args], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    run_dir = tmp_path / "runs"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # kill once generation 1 is training
        time.sleep(0.2)
        if any(t.user_attrs.get(attrs.PBT_GENERATION_ATTR) == 1
               and t.state == TrialState.RUNNING for t in _segments_so_far(run_dir)):
            break
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its slots
    process.wait()
    wait_until_gone(process.pid)
    before = {t.number: t.values for t in _segments(run_dir) if t.state == TrialState.COMPLETE}
    assert 4 <= len(before) < 12

    result = run_tuner("sweep", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = load_study(run_dir).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    for number, values in before.items():  # nothing recorded is lost or trained again
        assert trials[number].values == values
    places = Counter((t.user_attrs[attrs.PBT_MEMBER_ATTR], t.user_attrs[attrs.PBT_GENERATION_ATTR])
                     for t in done)
    assert sorted(places) == [(m, g) for m in range(4) for g in range(3)]
    assert set(places.values()) == {1}, places
    for failed in (t for t in trials if t.state == TrialState.FAIL):
        assert cut_short(failed)  # killed; repeated with its values and its parent
        [repeat] = [t for t in done if t.user_attrs.get(attrs.RETRY_OF_ATTR) == failed.number]
        assert repeat.user_attrs.get(attrs.PBT_PARENT_ATTR) == failed.user_attrs.get(
            attrs.PBT_PARENT_ATTR)
        # every value it had sampled before the kill, and the rest its decision fixed
        assert failed.params.items() <= repeat.params.items()
    runs = client_for(run_dir).search_runs(
        [client_for(run_dir).get_experiment_by_name("digits-mlp").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


def test_a_ddp_member_hands_its_checkpoint_to_the_next_generation(tmp_path):
    """Each segment trains on two DDP processes (gloo on CPU); every rank saves and
    resumes the segment's state."""
    result = run_tuner("sweep", "strategy=pbt", "strategy.population=2", "strategy.interval=1",
                       "trainer.max_epochs=2", "devices_per_trial=2", "trainer.accelerator=cpu",
                       "tracking.report=false", "tracking.log_models=false", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = load_study(tmp_path / "runs").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs[attrs.WORLD_SIZE_ATTR] == 2 for t in trials)
    for child in trials[2:]:
        parent = trials[child.user_attrs[attrs.PBT_PARENT_ATTR]]
        assert child.user_attrs[attrs.PBT_CHECKPOINT_SHA_ATTR] == parent.user_attrs[
            attrs.PBT_END_SHA_ATTR]
        assert sorted(child.intermediate_values) == [2]  # its one epoch: the second


def test_bad_pbt_settings_are_refused_before_anything_is_written(tmp_path):
    bad = ("strategy=pbt", "strategy.population=1", "strategy.quantile=0.6",
           "strategy.interval=3", "trainer.max_epochs=10", "n_trials=20",
           "resume_checkpoint_s=null", "strategy.mutable=[model.optimizer]")
    with pytest.raises(ConfigError) as refused:
        plan(*bad, run_dir=tmp_path / "runs")
    said = str(refused.value)
    for key in ("strategy.population", "strategy.quantile", "strategy.interval", "n_trials",
                "resume_checkpoint_s"):
        assert f": {key}: " in said, said
    assert "model.optimizer decides whether model.momentum is sampled" in said
    assert "conf/strategy/pbt.yaml" in said or "command line" in said
    assert "pick a divisor of 10, e.g. strategy.interval=2" in said
    result = tuner_here("sweep", "strategy=pbt", "strategy.interval=7", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "strategy.interval" in result.stderr
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="no float key for PBT to mutate"):
        plan("strategy=pbt", *(f"~search.{key}" for key in (
            "model.lr", "model.momentum", "model.weight_decay", "model.dropout",
            "trainer.gradient_clip_val")), run_dir=tmp_path / "runs")
