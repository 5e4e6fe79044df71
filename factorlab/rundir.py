"""Reading a finished (or running) run folder back: its recipe, its model with trained weights."""

from __future__ import annotations

import atexit
import json
from pathlib import Path

from factorlab.errors import FactorlabError, RunFolderError
from factorlab.files import describe_torch_load_failure
from factorlab.model import Disentangler, build_model
from factorlab.recipe import Recipe, load_recipe
from factorlab.resources import without_pretrained_weights
from factorlab.runfolders import lock_holder_alive

CHECKPOINTS = "checkpoints"  # the run folder's checkpoint folder: last.pt, best.pt


def check_run_dir(rundir: Path) -> Path:
    """The run folder, or an error saying what is missing."""
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise FactorlabError(f"run folder not found: {rundir}; pass the folder that `factorlab run` printed")
    if not (rundir / "recipe.toml").is_file():
        raise FactorlabError(
            f"{rundir} is not a run folder (no recipe.toml); pass the folder that `factorlab run` printed"
        )
    return rundir


def checkpoint_path(rundir: Path, checkpoint: str) -> Path:
    """The file of a run's checkpoint 'best' or 'last'; 'best' falls back to last.pt when no epoch was evaluated."""
    path = Path(rundir) / CHECKPOINTS / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.is_file():
        path = Path(rundir) / CHECKPOINTS / "last.pt"
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by factorlab (no code is unpickled)."""
    import torch

    if not path.is_file():
        raise FactorlabError(f"no checkpoint at {path}; a run writes checkpoints/last.pt after its first epoch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's text is not passed on: it suggests the unsafe weights_only=False
        raise FactorlabError(
            f"cannot read checkpoint: {describe_torch_load_failure(path, exc)}. A run folder's checkpoints are "
            "checkpoints/last.pt and best.pt as the run wrote them"
        ) from None
    if not isinstance(state, dict) or not ({"model", "trainer"} & set(state)):
        raise FactorlabError(
            f"{path} is a torch file but not a factorlab checkpoint (no model weights in it); a run folder's "
            "checkpoints are checkpoints/last.pt and best.pt as the run wrote them"
        )
    return state


def default_checkpoint(rundir: Path) -> str:
    """The checkpoint a run's summary.json scores and `factorlab eval` loads by default: the recipe's run.checkpoint."""
    return load_recipe(check_run_dir(rundir) / "recipe.toml").run.checkpoint


def checkpoint_info(rundir: Path, checkpoint: str, metric: str | None = None, *, state: dict | None = None) -> dict:
    """What names a scored checkpoint: {'name', 'file', 'epoch', 'selected_on', 'value'} (for summary and eval).

    `state`: the checkpoint, when the caller has read it already (it is read here otherwise)."""
    path = checkpoint_path(rundir, checkpoint)
    state = load_checkpoint(path) if state is None else state
    best = path.name == "best.pt"
    return {
        "name": checkpoint,
        "file": str(path.relative_to(rundir)),
        "epoch": state.get("epoch"),
        "selected_on": f"val {state.get('metric', metric)}" if best else "last epoch (no selection)",
        "value": state.get("value") if best else None,
    }


def load_run(rundir: Path, checkpoint: str | None = None) -> tuple[Recipe, Disentangler]:
    """The recipe and the trained model of a run, in eval mode on the CPU.

    `checkpoint`: 'best' or 'last'; None = the recipe's run.checkpoint, the one summary.json scores.
    """
    rundir = check_run_dir(rundir)
    recipe = load_recipe(rundir / "recipe.toml")
    path = checkpoint_path(rundir, checkpoint or recipe.run.checkpoint)
    state = load_checkpoint(path)
    recipe = without_pretrained_weights(recipe)  # the checkpoint holds the trained trunk: skip the pretrained load
    trainer = state.get("trainer")
    weights = state["model"] if "model" in state else trainer.get("model") if isinstance(trainer, dict) else None
    classes = state.get("classes")
    if not isinstance(weights, dict) or not isinstance(classes, dict):
        raise RunFolderError(f"{path} holds no model weights and classes: it is not a checkpoint factorlab wrote")
    model = build_model(recipe, classes=classes)  # its own errors are the recipe's
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # torch: missing or unexpected keys, a size mismatch
        detail = " ".join(str(exc).replace("Error(s) in loading state_dict for Disentangler:", "").split())
        raise RunFolderError(
            f"{path} does not fit {rundir / 'recipe.toml'} ({detail[:300]}): the recipe was edited after training, "
            "or the checkpoint comes from another run. Put back the run's own recipe.toml and checkpoints/."
        ) from None
    model.eval()
    return recipe, model


def _numbers(metrics: object) -> bool:
    """A split's metrics as summary.json holds them: name -> a number (or null)."""
    return isinstance(metrics, dict) and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in metrics.values()
    )


def load_summary(rundir: Path) -> dict:
    """The run's summary.json (written when a run finishes)."""
    path = check_run_dir(rundir) / "summary.json"
    if not path.is_file():
        raise FactorlabError(
            f"{rundir} has no summary.json: the run has not finished (resume it with factorlab run --resume {rundir})"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise FactorlabError(
            f"{path} is not UTF-8 text (byte {err.start} cannot be decoded): it is damaged; "
            f"rerun or resume the run to rewrite it (factorlab run --resume {rundir} run.epochs=N)"
        ) from None
    except json.JSONDecodeError as err:
        raise FactorlabError(
            f"{path}, line {err.lineno}: not valid JSON ({err.msg}); rerun or resume the run to rewrite it"
        ) from None
    splits = summary.get("splits", {}) if isinstance(summary, dict) else None
    if not isinstance(splits, dict) or not all(_numbers(metrics) for metrics in splits.values()):
        raise FactorlabError(
            f"{path} is not a summary written by factorlab (a JSON object whose 'splits' hold numbers); rerun or "
            f"resume the run to rewrite it (factorlab run --resume {rundir} run.epochs=N)"
        )
    return summary


# ---------------------------------------------------------------------------------------------
# Run-folder safety: one writer at a time, tolerant reading of a killed run's log, resume checks

LOCK = ".lock"


class RunLock:
    """`<rundir>/.lock`, holding the writer's pid and host: a second writer is refused with a clear message.

    A lock whose process is gone (same host, pid not running) is stale and is taken over. Re-acquiring a
    lock this process holds is allowed (counted), so `resume_run` and `run_recipe` can both take it.
    """

    _held: dict[Path, int] = {}

    def __init__(self, rundir: Path) -> None:
        self.rundir = Path(rundir)
        self.path = self.rundir / LOCK

    def owner(self) -> dict | None:
        """The lock file's content ({'pid', 'host', 'since'}), {} for an unreadable one, None when there is none."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunFolderError naming the process that holds it."""
        import os
        import socket
        import time

        from factorlab.files import unwritable_error

        key = self.path.resolve()
        if key in RunLock._held:
            RunLock._held[key] += 1
            return self
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self.owner()
                if owner is None:
                    continue  # released meanwhile: try again
                if self._stale(owner):
                    self._take_over(owner)
                    continue
                who = (
                    f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('since')})"
                    if owner
                    else "another process (its lock file is being written)"
                )
                raise RunFolderError(
                    f"run folder {self.rundir} is in use by {who}: only one process may write a run folder. "
                    f"Wait until it finishes; if that process no longer exists (e.g. on another machine), delete "
                    f"{self.path} and run the command again."
                ) from None
            except OSError as exc:
                raise unwritable_error(self.rundir, exc, "into run folder") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(me))
            RunLock._held[key] = 1
            atexit.register(self._release_at_exit, key)  # also when an error ends the process before release()
            return self
        raise RunFolderError(f"could not take the lock {self.path}: other processes keep taking it; try again")

    def _take_over(self, stale: dict) -> None:
        """Remove a stale lock. Only the process that creates `.lock.takeover` may, and only if the lock
        still holds the stale owner: two processes finding the same stale lock cannot both take it."""
        import os
        import time

        guard = self.path.with_name(LOCK + ".takeover")
        try:
            os.close(os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > 10:  # left by a process killed while taking over
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.05)  # another process is taking over: look again
            return
        try:
            if self.owner() == stale:
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def _stale(self, owner: dict) -> bool:
        import socket
        import time

        if not owner:  # empty or torn: a writer died between creating and filling it, or is filling it now
            try:
                return time.time() - self.path.stat().st_mtime > 10
            except FileNotFoundError:
                return True
        if owner.get("host") != socket.gethostname():
            return False  # cannot tell whether a process on another machine is alive
        return lock_holder_alive(owner) is not True  # this machine: gone, or a lock without a pid

    def release(self) -> None:
        """Give the lock up (the last of this process's nested acquisitions removes the file)."""
        key = self.path.resolve()
        count = RunLock._held.get(key, 0)
        if count > 1:
            RunLock._held[key] = count - 1
            return
        RunLock._held.pop(key, None)
        if count:
            self.path.unlink(missing_ok=True)

    def _release_at_exit(self, key: Path) -> None:
        if RunLock._held.pop(key, None):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_metrics(path: Path, *, warn=None) -> list[dict]:
    """The records of a metrics.jsonl. A torn last line (a run killed while writing it) is dropped, with a
    note to `warn`; a broken line elsewhere is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path}: not UTF-8 text (byte {err.start}); the log is damaged: delete it") from None
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    records = []
    for k, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            records.append(record)
        except ValueError as err:
            if k == len(numbered) - 1:
                if warn:
                    warn(f"{path}, line {number}: dropped a torn last line (the run was stopped while writing it)")
                break
            raise RunFolderError(
                f"{path}, line {number}: not a JSON record ({err}); delete that line and run the command again"
            ) from None
    return records


def check_resume_state(state: dict, path: Path) -> dict:
    """A checkpoint to resume from must be a run's last.pt (model, optimisers, epoch, random state)."""
    needed = {"trainer", "epoch", "rng", "main_sched"}
    if needed <= set(state) and isinstance(state["trainer"], dict) and "model" in state["trainer"]:
        if not isinstance(state["epoch"], int) or isinstance(state["epoch"], bool) or state["epoch"] < -1:
            raise RunFolderError(f"{path}: its epoch {state['epoch']!r} is not an epoch count; the file is damaged")
        return state
    if "model" in state and "trainer" not in state:
        raise RunFolderError(
            f"{path} holds only model weights (a best.pt checkpoint?), not the state a run resumes from "
            "(optimisers, epoch, random state): was best.pt copied over last.pt? A run resumes only from the "
            "last.pt it wrote; start a new run, or load these weights with `factorlab eval --checkpoint best`"
        )
    raise RunFolderError(
        f"{path} lacks {sorted(needed - set(state))}: it is not a last.pt written by factorlab run; "
        "a run resumes only from the last.pt it wrote"
    )


def check_same_architecture(saved: Recipe, recipe: Recipe, state: dict, path: Path) -> None:
    """Refuse a resume whose recipe (with its overrides) builds a model the checkpoint's weights do not fit."""
    import torch

    recipe = without_pretrained_weights(recipe)  # shapes only: no pretrained weights are loaded for the check
    try:
        with torch.device("meta"):  # shapes without allocating memory
            model = build_model(recipe, classes=state.get("classes"))
    except FactorlabError:
        raise
    except Exception:  # a plugin part that cannot be built on the meta device: loading the weights will tell
        return
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state["trainer"]["model"].items()}
    problems = [
        f"{k}: {found[k]} in the checkpoint, {expected[k]} now"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    problems += [f"{k}: new, not in the checkpoint" for k in expected if k not in found]
    problems += [f"{k}: in the checkpoint, not built now" for k in found if k not in expected]
    if not problems:
        return
    changed = _recipe_changes(saved.to_dict(), recipe.to_dict())
    what = "; ".join(changed[:6]) or "(no recipe value differs: a plugin builds the parts differently now)"
    raise RunFolderError(
        f"cannot resume {path.parent.parent}: the recipe now builds a different model than the one in {path.name}. "
        f"Changed: {what}. {len(problems)} weight tensor(s) do not fit, e.g. {'; '.join(problems[:3])}. "
        "Resume only with overrides that keep the model (e.g. run.epochs=20), or start a new run with the new recipe."
    )


def _recipe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every value that differs between two plain recipe dicts (architecture sections first)."""
    out = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _recipe_changes(a, b, name + ".")
        elif (
            isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b)
        ):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                out += _recipe_changes(x, y, f"{name}.{i}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    architecture = ("encoder", "codes", "heads", "adversaries", "decoder", "data.image_size", "factors")
    return sorted(out, key=lambda line: not line.startswith(architecture))
