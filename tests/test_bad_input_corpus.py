"""The bad-input corpus: every kind of malformed input, through the real `tuner` command.

Each case is one malformed input. The test runs the installed CLI on it and checks that
the command exits 2, that the message names the file (or the command line) and the key
and says what to do (its `fix:` line), and that nothing was created: for a fresh folder,
no run dir at all (no journal, MLflow store, artifacts or trials); for a study that
exists, the same trials in the study and the same runs in the MLflow store as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    FIXTURE_CONF,
    client_for,
    files_under,
    load_study,
    run_tuner,
    tuner_here,
)
from tests.servers import free_port
from tuner.tracking import tags

# Tokens in a case's args and env, filled in when it runs.
FIXTURES = "$FIXTURES"  # tests/fixtures/conf: test-only config groups
CLOSED_PORT = "$CLOSED_PORT"  # a port on 127.0.0.1 where nothing listens

MODEL_BASE = "defaults:\n  - mlp\n  - _self_\n"
MLP_SEARCH = "conf/search/mlp.yaml"  # the default search space, where its entries live
MULTI = ("metric=[val_acc,param_count]", "direction=[maximize,minimize]")
# The study the resume cases find in their folder, made by this command first.
RESUMED = ("n_trials=2", "trainer.max_epochs=1", "tracking.report=false", "slots=1",
           "tracking.log_models=false")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # after `tuner sweep` (or `tuner <command>`)
    where: str  # the file, or the command line, the message names
    key: str | None  # the config key it names; None where no key applies (YAML syntax)
    says: str  # what is wrong, from the same line
    fix: str  # from the `fix:` line that follows
    files: dict[str, str] = field(default_factory=dict)  # written under the cwd first
    env: dict[str, str] = field(default_factory=dict)
    command: str = "sweep"
    resume: bool = False  # run where a study of RESUMED already exists


def cl(override: str) -> str:
    """How a problem set by one command-line override is located."""
    return f"command line ({override})"


def in_mlp_search(override: str) -> str:
    return f"{MLP_SEARCH} (with command line {override})"


def search_case(id: str, override: str, key: str, says: str, fix: str) -> Case:
    """A field of one of the default search space's entries, set wrong on the command line."""
    return Case(id, (override,), in_mlp_search(override), key, says, fix)


def search_file_case(id: str, text: str, key: str, says: str, fix: str) -> Case:
    """A search space of the user's own, in --config-dir."""
    return Case(id, ("--config-dir", "conf", "search=mine"), "conf/search/mine.yaml", key, says,
                fix, files={"conf/search/mine.yaml": text})


CASES = [
    # -- YAML, groups, keys, types (Hydra composition) -----------------------------------
    Case("broken-yaml-in-a-group-file", ("--config-dir", "conf", "model=mine"),
         "conf/model/mine.yaml:5", None, "invalid YAML", "fix the YAML syntax at that line",
         files={"conf/model/mine.yaml": MODEL_BASE + "width: [64\n"}),
    Case("broken-yaml-in-a-search-file", ("--config-dir", "conf", "search=mine"),
         "conf/search/mine.yaml:3", None, "invalid YAML", "fix the YAML syntax at that line",
         files={"conf/search/mine.yaml": "model:\n  lr: {type: float, low: 0.001, high: 0.1\n"
                                         "  width: {type: int, low: 32, high: 64}\n"}),
    Case("unknown-group-option", ("model=resnet",), "command line", "model",
         "there is no model option 'resnet'", "choose one of: cnn, gpt, linear, mlp"),
    Case("unknown-top-level-key-added", ("+colour=blue",), cl("+colour=blue"), "colour",
         "no such key in the config", "`tuner sweep --cfg` prints every valid key"),
    Case("unknown-top-level-key-in-a-preset", ("--config-dir", "conf", "experiment=mine"),
         "conf/experiment/mine.yaml", "colour", "no such key in the config",
         "`tuner sweep --cfg` prints every valid key",
         files={"conf/experiment/mine.yaml": "# @package _global_\nn_trials: 5\ncolour: blue\n"}),
    Case("override-of-a-key-that-does-not-exist", ("tracking.flush_intervall=3",),
         cl("tracking.flush_intervall=3"), "tracking.flush_intervall",
         "no such key in the config", "did you mean tracking.flush_interval?"),
    Case("misspelt-nested-key-added", ("+tracking.flush_intervall=3",),
         cl("+tracking.flush_intervall=3"), "tracking.flush_intervall",
         "no such key in the config", "did you mean tracking.flush_interval?"),

    # -- trainer: any lightning.Trainer argument; the rest refused (trainer_checks) -------
    Case("trainer-argument-that-does-not-exist", ("trainer.max_epoch=3",),
         cl("trainer.max_epoch=3"), "trainer.max_epoch",
         "is not an argument of lightning.Trainer", "did you mean trainer.max_epochs"),
    Case("trainer-argument-misspelt-in-a-file", ("--config-dir", "conf", "trainer=mine"),
         "conf/trainer/mine.yaml", "trainer.gradient_clip_value",
         "is not an argument of lightning.Trainer", "did you mean trainer.gradient_clip_val",
         files={"conf/trainer/mine.yaml": "defaults:\n  - default\n  - _self_\n"
                                          "gradient_clip_value: 1.0\n"}),
    Case("trainer-logger-owned-by-tuner", ("trainer.logger=true",), cl("trainer.logger=true"),
         "trainer.logger", "is set by tuner for every trial", "self.logger.experiment"),
    Case("trainer-callbacks-owned-by-tuner", ("+trainer.callbacks=[]",),
         cl("+trainer.callbacks=[]"), "trainer.callbacks", "is set by tuner for every trial",
         "choose it with callbacks=FILE"),
    Case("trainer-extra-is-gone", ("+trainer.extra={benchmark: true}",),
         cl("+trainer.extra={benchmark: true}"), "trainer.extra", "is not a Trainer argument",
         "directly under trainer:"),
    Case("trainer-string-for-an-int", ("trainer.max_epochs=ten",), cl("trainer.max_epochs=ten"),
         "trainer.max_epochs", "could not be converted to Integer",
         "give a value of the expected type"),

    # -- callbacks: a mapping of name to a callback's config -----------------------------
    Case("callbacks-given-a-value-on-the-command-line", ("callbacks=5",), cl("callbacks=5"),
         "callbacks", "chooses a file of the callbacks group, not a value",
         "choose one of: none"),
    Case("callbacks-not-a-mapping-in-a-preset", ("--config-dir", "conf", "experiment=mine"),
         "conf/experiment/mine.yaml", "callbacks", "must be a mapping, got a list",
         "write callbacks as NAME: VALUE lines",
         files={"conf/experiment/mine.yaml": "# @package _global_\ncallbacks: [early_stopping]\n"}),
    Case("callback-without-a-target", ("--config-dir", "conf", "callbacks=mine"),
         "conf/callbacks/mine.yaml", "callbacks.stop._target_", "is missing",
         "or callbacks.stop: null to leave it out",
         files={"conf/callbacks/mine.yaml": "stop:\n  monitor: val_acc\n"}),
    Case("misspelt-nested-key-in-a-file", ("--config-dir", "conf", "model=mine"),
         "conf/model/mine.yaml", "model.widht", "no such key in the config",
         "did you mean model.width?", files={"conf/model/mine.yaml": MODEL_BASE + "widht: 3\n"}),
    Case("string-for-an-int-on-the-command-line", ("n_trials=many",), cl("n_trials=many"),
         "n_trials", "could not be converted to Integer", "give a value of the expected type"),
    Case("string-for-an-int-in-a-file", ("--config-dir", "conf", "model=mine"),
         "conf/model/mine.yaml", "model.width", "could not be converted to Integer",
         "give a value of the expected type",
         files={"conf/model/mine.yaml": MODEL_BASE + "width: wide\n"}),
    Case("value-outside-an-enum", ("model.optimizer=sdg",), cl("model.optimizer=sdg"),
         "model.optimizer", "Invalid value 'sdg'", "use one of the listed values"),
    Case("override-syntax", ("n_trials=[1,2",), "command line", None,
         "cannot parse an override", "write overrides as key=value"),
    Case("required-value-missing", ("data=mnist",), "conf/data/mnist.yaml", "data.path",
         "is required but has no value", "data.path=..."),
    Case("interpolation-the-data-cannot-fill", ("model=gpt",), "conf/model/gpt.yaml",
         "model.vocab_size", "'data.vocab_size' not found", "data=shakespeare"),
    Case("config-dir-that-does-not-exist", ("--config-dir", "nowhere"), "command line",
         "--config-dir", "is not a directory", "pass the folder that holds your config groups"),

    # -- budget, objectives, slots, targets, where records go (the plan) ------------------
    Case("negative-n-trials", ("n_trials=-3",), cl("n_trials=-3"), "n_trials",
         "must be at least 1, got -3", "e.g. n_trials=30"),
    Case("zero-slots", ("slots=0",), cl("slots=0"), "slots",
         "must be a positive number or auto", "e.g. slots=2"),
    Case("the-old-word-for-slots", ("workers=2",), cl("workers=2"), "workers",
         "was renamed slots", "use slots=... instead"),
    Case("misspelt-group", ("modle=cnn",), cl("modle=cnn"), "modle",
         "no such key in the config", "did you mean model?"),
    Case("negative-retry-failed", ("retry_failed=-1",), cl("retry_failed=-1"), "retry_failed",
         "must be >= 0, got -1", "e.g. retry_failed=2"),
    Case("unknown-direction", ("direction=up",), cl("direction=up"), "direction",
         "'up' is not maximize or minimize", "use direction=maximize"),
    Case("one-direction-for-two-metrics", (MULTI[0], "direction=maximize"),
         cl("direction=maximize"), "direction", "gives 1 direction(s) for 2 metric(s)",
         "give one direction per metric"),
    Case("pruner-on-a-multi-objective-study", MULTI, "conf/pruner/median.yaml", "pruner",
         "cannot prune a multi-objective study", "use pruner=none"),
    Case("cma-es-on-a-multi-objective-study", (*MULTI, "pruner=none", "sampler=cmaes"),
         "conf/sampler/cmaes.yaml", "sampler", "CMA-ES cannot optimise several metrics",
         "use sampler=nsga2"),
    Case("sampler-target-that-does-not-import",
         ("sampler._target_=optuna.samplers.NoSuchSampler",),
         cl("sampler._target_=optuna.samplers.NoSuchSampler"), "sampler._target_",
         "cannot import 'optuna.samplers.NoSuchSampler'", "is the package installed"),
    Case("run-dir-under-a-file", ("run_dir=blocker/runs",), cl("run_dir=blocker/runs"),
         "run_dir", "cannot write under", "choose a writable folder",
         files={"blocker": "a file, not a folder\n"}),
    Case("unreachable-storage-database", ("storage=postgres",), "conf/storage/postgres.yaml",
         "storage.url", f"port {CLOSED_PORT} failed: Connection refused",
         "start the database server", env={"PGHOST": "127.0.0.1", "PGPORT": CLOSED_PORT}),

    # -- search spaces: every distribution the parser rejects --------------------------
    search_case("low-above-high", "search.model.lr.low=0.5", "search.model.lr",
                "low (0.5) is greater than high (0.1)", "make low <= high"),
    search_case("log-scale-from-zero", "search.model.lr.low=0", "search.model.lr",
                "log scale needs low > 0", "raise low above 0"),
    search_case("range-not-a-multiple-of-step", "search.model.width.step=5",
                "search.model.width", "is not a multiple of step (5)", "adjust high"),
    search_case("step-zero", "search.model.width.step=0", "search.model.width",
                "`step` must be a positive integer, got 0", "set step: to a positive number"),
    search_case("step-with-log", "+search.model.width.log=true", "search.model.width",
                "`step` and `log` cannot be combined", "drop one of them"),
    search_case("fractional-bound-of-an-int", "search.model.width.low=1.5",
                "search.model.width", "`low` must be a finite integer, got 1.5",
                "set low: to a number"),
    search_case("bound-not-a-number", "search.model.lr.low=small", "search.model.lr",
                "`low` must be a finite number, got 'small'", "set low: to a number"),
    search_case("log-not-a-boolean", "search.model.lr.log=yes", "search.model.lr",
                "`log` must be true or false, got 'yes'", "write log: true or leave it out"),
    search_case("unknown-distribution-type", "search.model.lr.type=normal", "search.model.lr",
                "unknown type 'normal'", "use type: float, int or categorical"),
    search_case("unknown-distribution-field", "+search.model.lr.hgih=1", "search.model.lr",
                "unknown field(s) for a float distribution: hgih", "allowed fields: high"),
    search_case("empty-choices", "search.data.batch_size.choices=[]", "search.data.batch_size",
                "categorical needs a non-empty list `choices`", "e.g. choices: [32, 64, 128]"),
    search_case("non-primitive-choices", "search.data.batch_size.choices=[[32,64],[128]]",
                "search.data.batch_size", "choices must be str, int, float, bool or null",
                "search a scalar instead"),
    search_case("repeated-choices", "search.data.batch_size.choices=[32,32]",
                "search.data.batch_size", "choices repeat a value", "list each choice once"),
    search_case("value-outside-the-keys-type", "search.model.width.type=float",
                "search.model.width", "value 32.0 cannot be set at model.width",
                "make the distribution produce values of that key's type"),
    Case("scalar-instead-of-a-distribution", ("search.model.lr=0.01",),
         cl("search.model.lr=0.01"), "search.model.lr", "expected a distribution, got 0.01",
         "write e.g. {type: float"),
    Case("when-names-an-impossible-value",
         ("search.model.momentum.when={model.optimizer:nesterov}",),
         cl("search.model.momentum.when={model.optimizer:nesterov}"),
         "search.model.momentum.when", "model.optimizer can never be 'nesterov'",
         "use values the other entry can take"),
    Case("when-not-a-mapping", ("search.model.momentum.when=sgd",),
         cl("search.model.momentum.when=sgd"), "search.model.momentum.when",
         "expected a mapping, got 'sgd'", "write when: {model.optimizer: sgd}"),
    Case("when-names-no-entry", (
        "~search.model.momentum",
        "+search.model.momentum={type:float,low:0.0,high:0.9,when:{model.optimizr:sgd}}"),
         cl("~search.model.momentum"), "search.model.momentum.when",
         "'model.optimizr' is not an entry of this search space", "use one of: data.batch_size"),
    Case("path-that-is-not-a-config-key", ("+search.model.lrr={type:float,low:0.1,high:0.2}",),
         cl("+search.model.lrr={type:float,low:0.1,high:0.2}"), "search.model.lrr",
         "'model.lrr' is not a key of the composed config", "check the spelling; keys under"),
    Case("path-that-cannot-be-searched", ("+search.n_trials={type:int,low:1,high:3}",),
         cl("+search.n_trials={type:int,low:1,high:3}"), "search.n_trials",
         "'n_trials' cannot be searched", "search keys under model., data., trainer."),
    search_file_case("empty-search-space", "{}\n", "search", "the search space is empty",
                     "add at least one entry"),
    search_file_case("entry-given-nested-and-dotted",
                     "model:\n  lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
                     "model.lr: {type: float, low: 0.001, high: 0.1}\n",
                     "search.model.lr", "is given twice (nested and dotted)",
                     "keep one of the two entries"),
    search_file_case("when-on-itself",
                     "model.lr: {type: float, low: 0.001, high: 0.1, when: {model.lr: 0.01}}\n",
                     "search.model.lr.when", "an entry cannot depend on itself",
                     "name another search entry"),
    search_file_case("when-in-a-cycle",
                     "model.optimizer: {type: categorical, choices: [sgd, adam],"
                     " when: {model.nesterov: true}}\n"
                     "model.nesterov: {type: categorical, choices: [true, false],"
                     " when: {model.optimizer: sgd}}\n",
                     "search.model.optimizer.when", "conditions form a cycle",
                     "make the dependency one-way"),
    Case("grid-over-a-continuous-range", ("sampler=grid",), MLP_SEARCH, "search.model.lr",
         "the grid sampler needs a finite set of values", "give it a `step`"),
    Case("grid-over-a-conditional-entry",
         ("--config-dir", FIXTURES, "sampler=grid", "search=grid_with_when"),
         "grid_with_when.yaml", "search.model.momentum.when",
         "repeats the same configuration for each of its values", "drop `when`"),

    # -- found by the preflight: one batch trained in a slot before anything is written --
    Case("metric-never-logged", ("metric=val_accuracy",), cl("metric=val_accuracy"), "metric",
         "'val_accuracy' is not logged by tuner.models.mlp.MLPClassifier",
         "set metric to one of those"),
    Case("callback-target-that-does-not-import", ("--config-dir", "conf", "callbacks=mine"),
         "conf/callbacks/mine.yaml", "callbacks.stop", "cannot be built",
         "set it to null to leave it out",
         files={"conf/callbacks/mine.yaml": "stop:\n  _target_: nowhere.EarlyStop\n"}),
    Case("callback-monitors-a-metric-never-logged", ("--config-dir", "conf", "callbacks=mine"),
         "conf/callbacks/mine.yaml", "callbacks.stop.monitor",
         "'val/acc' is not a metric tuner.models.mlp.MLPClassifier logs",
         "monitor one of those, e.g. the study's metric (val_acc)",
         files={"conf/callbacks/mine.yaml": "stop:\n  _target_: "
                "lightning.pytorch.callbacks.EarlyStopping\n  monitor: val/acc\n"}),
    Case("model-target-that-does-not-import", ("model._target_=nowhere.Model",),
         cl("model._target_=nowhere.Model"), "model._target_", "cannot import 'nowhere.Model'",
         "is the package installed, or on PYTHONPATH?"),
    Case("worker-with-no-study-to-join", ("--wait", "0", "n_trials=1"), "conf/sweep.yaml",
         "study_name", "there is no study 'digits-mlp' in the storage to join",
         "start it with `tuner sweep` (same config) first", command="worker"),

    # -- a study that exists, resumed with a config it was not created with ----------------
    Case("search-space-changed-on-resume", (*RESUMED, "search.model.width.high=512"),
         in_mlp_search("search.model.width.high=512"), "search",
         "the search space changed since study 'digits-mlp' began",
         "start a new study with study_name=digits-mlp-2", resume=True),
    Case("direction-changed-on-resume", (*RESUMED, "direction=minimize"),
         cl("direction=minimize"), "direction",
         "study 'digits-mlp' was created to maximize; this config asks to minimize",
         "start a new study (study_name=digits-mlp-2)", resume=True),
    Case("metric-changed-on-resume", (*RESUMED, "metric=param_count"),
         cl("metric=param_count"), "metric",
         "study 'digits-mlp' optimises val_acc; this config asks for param_count",
         "restore metric=val_acc", resume=True),
]


def test_the_corpus_holds_distinct_cases():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.command, c.args, tuple(c.files.items())) for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def existing_study(tmp_path_factory):
    """A folder holding a finished two-trial study, for the resume cases."""
    cwd = tmp_path_factory.mktemp("resumed")
    result = tuner_here("sweep", *RESUMED, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd


def snapshot(cwd: Path) -> dict:
    """What the resume cases must leave as it was: files, trials and MLflow runs."""
    run_dir = cwd / "runs"
    study = load_study(run_dir)
    client = client_for(run_dir)
    experiment = client.get_experiment_by_name("digits-mlp")
    return {
        # SQLite's -wal and -shm files come and go with open connections (this test's
        # own MLflow client keeps one), so they are not the command's doing.
        "files": [p.relative_to(cwd) for p in files_under(cwd)
                  if not p.name.endswith(("-wal", "-shm"))],
        "journal": (run_dir / "optuna.journal").read_bytes(),
        "trials": [(t.number, t.state.name, t.params) for t in study.trials],
        "user_attrs": study.user_attrs,
        "runs": sorted((r.info.run_id, r.info.status, r.info.end_time, r.data.tags.get(
            tags.ROLE)) for r in client.search_runs([experiment.experiment_id])),
    }


def write_files(cwd: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = cwd / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def assert_names_where_key_and_fix(stderr: str, case: Case, fill) -> None:
    lines = stderr.splitlines()
    head = f"{fill(case.where)}: " + (f"{case.key}: " if case.key is not None else "")
    at = next((i for i, line in enumerate(lines) if head in line), None)
    assert at is not None, f"no line names {head!r}:\n{stderr}"
    assert fill(case.says) in lines[at], f"{case.says!r} not in {lines[at]!r}"
    fix = next((line for line in lines[at + 1:] if line.startswith("  fix: ")), "")
    assert case.fix in fix, f"{case.fix!r} not in the fix after {lines[at]!r}:\n{stderr}"
    assert "nothing was written." in stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_before_anything_is_created(case, tmp_path, request):
    """Each case through the command's own code, in this process (tuner_here)."""
    _refused(case, tmp_path, request, tuner_here)


# The same cases through the installed command, as a shell runs it: one of each kind
# (a file, the command line, a resumed study, a server that does not answer).
THROUGH_THE_COMMAND = ("misspelt-nested-key-in-a-file", "the-old-word-for-slots",
                       "search-space-changed-on-resume", "unreachable-storage-database",
                       "metric-never-logged")


@pytest.mark.parametrize("case", [c for c in CASES if c.id in THROUGH_THE_COMMAND],
                         ids=lambda c: c.id)
def test_the_installed_command_refuses_the_same_way(case, tmp_path, request):
    _refused(case, tmp_path, request, run_tuner)


def _refused(case, tmp_path, request, tuner) -> None:
    port = str(free_port())

    def fill(text: str) -> str:
        return text.replace(FIXTURES, str(FIXTURE_CONF)).replace(CLOSED_PORT, port)

    if case.resume:
        cwd = request.getfixturevalue("existing_study")
        before = snapshot(cwd)
        assert len(before["trials"]) == 2 and len(before["runs"]) == 3  # a parent, 2 trials
    else:
        cwd = tmp_path
        write_files(cwd, case.files)
        before = {p: p.read_bytes() for p in files_under(cwd) if p.is_file()}

    result = tuner(case.command, *map(fill, case.args), cwd=cwd,
                   env={k: fill(v) for k, v in case.env.items()})

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert_names_where_key_and_fix(result.stderr, case, fill)
    if case.resume:
        assert snapshot(cwd) == before, "the refused command changed the existing study"
    else:
        assert not (cwd / "runs").exists()
        after = {p: p.read_bytes() for p in files_under(cwd) if p.is_file()}
        assert after == before, "a file was created or changed"
        folders = {cwd / parent for f in before for parent in f.relative_to(cwd).parents
                   if parent != Path(".")}
        assert {p for p in files_under(cwd) if p.is_dir()} == folders, "a folder was created"
