"""The worker side of sweep's protocol for your own Python training script.

Dependency-free: import it (put this file beside your script) or copy it. It reads the trial's
params, reports metrics and reads the coordinator's decision, and keeps checkpoints so an
interrupted trial resumes where it stopped (see "Worker protocol" in sweep's README):

    import sweep_worker

    trial = sweep_worker.Trial()
    state = trial.load(read=json.load) or fresh_state(trial.params)   # resumes if it can
    for step in range(state["step"] + 1, steps + 1):
        ...train one step...
        if step % 10 == 0:
            state["step"] = step
            saved = trial.save(step, lambda f: f.write(json.dumps(state).encode()))
            if not trial.report(step, checkpoint=saved, val_loss=loss):
                break                                                      # pruned
        if trial.stopping:            # SIGTERM: stopped, out of time on Slurm, preempted
            state["step"] = step
            if trial.save(step, lambda f: f.write(json.dumps(state).encode())):
                trial.report(step, checkpoint=True)                        # resume here
            sys.exit(0)
    trial.final(val_loss=loss)
"""

import json
import os
import signal
import sys
from pathlib import Path


class Trial:
    """One attempt at a trial: its params, where its checkpoints live, the step to resume from."""

    def __init__(self):
        hello = None
        # The coordinator's first stdin line; a script started by hand (a terminal) has none.
        if not sys.stdin.isatty():
            line = sys.stdin.readline()
            if line.strip():
                hello = json.loads(line)
        self._replies = hello is not None
        env = os.environ
        if hello is None:
            hello = {"params": json.loads(env.get("SWEEP_PARAMS", "{}")), "trial": env.get("SWEEP_TRIAL_ID")}
        self.params = hello["params"]
        self.number = hello.get("trial")
        self.attempt = hello.get("attempt", int(env.get("SWEEP_ATTEMPT", "1")))
        folder = hello.get("checkpoint_dir") or env.get("SWEEP_CHECKPOINT_DIR")
        self.checkpoint_dir = Path(folder) if folder else None
        step = hello.get("resume_step", env.get("SWEEP_RESUME_STEP"))
        self.resume_step = int(step) if step not in (None, "") else None

    @property
    def stopping(self):
        """True once the worker was asked to stop (SIGTERM: the coordinator stopping, a trial
        timeout, Slurm's warning before a time limit, preemption): save a checkpoint, report
        it with `report(step, checkpoint=True)` and exit, within the study's `grace`. Reading it
        the first time catches SIGTERM from then on (a second one still kills); a script that
        never reads it dies of SIGTERM as any script does."""
        if not hasattr(self, "_stop"):
            self._stop = False

            def on_sigterm(signum, frame):
                if self._stop:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGTERM)
                self._stop = True

            signal.signal(signal.SIGTERM, on_sigterm)
        return self._stop

    def report(self, step, checkpoint=False, **metrics):
        """Sends one report; True to go on, False when the coordinator says stop. Pass
        checkpoint=True only once `save` of this step has returned True; with no metrics, the
        report only records that checkpoint."""
        line = dict(metrics, step=step)
        if checkpoint:
            line["checkpoint"] = True
        print(json.dumps(line), flush=True)
        if not self._replies:
            return True
        reply = sys.stdin.readline()
        if not reply:
            self._replies = False
            return True
        return json.loads(reply).get("decision") != "stop"

    def final(self, **metrics):
        """The trial's final metrics (else its last report counts)."""
        print(json.dumps({"final": metrics}), flush=True)

    def save(self, step, write, keep=2):
        """Writes the checkpoint of `step` with `write(binary_file)`, durably: to a temporary
        name, fsynced, renamed into place, the folder fsynced. Keeps the newest `keep`. Returns
        True when it is durable (then report it with checkpoint=True), False when it could not
        be written (a full disk): the earlier checkpoints stay, and the run goes on."""
        if self.checkpoint_dir is None:
            return False
        path = self._path(step)
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
            folder = os.open(self.checkpoint_dir, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as e:
            print(f"checkpoint of step {step} failed, going on from the previous one: {e}", file=sys.stderr)
            try:
                partial.unlink()
            except OSError:
                pass
            return False
        for old in self._steps()[keep:]:
            try:
                self._path(old).unlink()
            except OSError:
                pass
        return True

    def load(self, read):
        """The state of the newest checkpoint at or before the resume step, read with
        `read(binary_file)`; None for a fresh start (no resume step, or no usable file). A file
        `read` cannot read is passed over for the one before it, and said so on stderr."""
        if self.resume_step is None or self.checkpoint_dir is None:
            return None
        for step in [s for s in self._steps() if s <= self.resume_step]:
            try:
                with open(self._path(step), "rb") as f:
                    state = read(f)
                print(f"checkpoint: resuming from step {step}", file=sys.stderr)
                return state
            except Exception as e:  # a damaged file: try the one before it
                print(f"checkpoint: step {step} is not usable ({e}); trying an earlier one", file=sys.stderr)
        print("checkpoint: no usable checkpoint: starting over from step 0", file=sys.stderr)
        return None

    def _path(self, step):
        return self.checkpoint_dir / f"step-{step:08d}.ckpt"

    def _steps(self):
        """Steps of the checkpoint files, newest first."""
        if self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return []
        steps = []
        for p in self.checkpoint_dir.iterdir():
            name = p.name
            if name.startswith("step-") and name.endswith(".ckpt") and name[5:-5].isdigit():
                steps.append(int(name[5:-5]))
        return sorted(steps, reverse=True)
