"""Weights & Biases: each run, and each job of a sweep, as its own W&B run; never at a training run's cost.

Modes (``logger.wandb.mode``):
- ``auto`` (default): online when an API key is configured (WANDB_API_KEY, ``wandb login``), else offline
  with one line saying how to upload later; ``WANDB_MODE``, when set, decides instead;
- ``online``: online; without an API key, offline with a warning (never a prompt: wandb prompts on a
  terminal and blocks forever, so lrexp never starts an online run without credentials);
- ``offline``: the run is written under ``<run dir>/wandb/`` for ``wandb sync``;
- ``disabled``: nothing (wandb is not even imported).

Online start-up that fails (no network, server down, bad key) falls back to offline within
``init_timeout``; any later W&B error is a warning. The local record never depends on W&B.

wandb is imported in ``start()`` only: ``logger=local`` runs never load it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrexp.errors import ConfigError, SecretInConfig, describe
from lrexp.loggers import Logger, RunInfo, unexpected_options
from lrexp.loggers.schemas import WandbMode
from lrexp.record import PLOTS_DIR, STEP, SUMMARY_FILE, Row, Status, Summary, read_summary
from lrexp.wandb_credentials import configured_credentials, redacted

log = logging.getLogger(__name__)

# wandb keeps retrying until its init_timeout and needs up to ~0.6 s more to give up (measured here with
# a closed port and with a server that never answers); it gets this much less than our bound.
GIVE_UP_MARGIN_S = 1.0
# wandb's own WANDB_MODE values, honoured in auto mode (dryrun is its old name for offline).
ENV_MODES = {"online": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}
# Keys under which a user might try to pass the API key: refused without being echoed.
SECRET_KEYS = ("api_key", "key")

# Once online start-up has failed in this process, later jobs of the same sweep (basic and joblib
# launchers run several jobs per process) go offline at once instead of each waiting init_timeout.
_online_failed: str | None = None


class WandbLogger(Logger):
    """logger.wandb (conf/logger/wandb.yaml documents each option; lrexp.config types them)."""

    def __init__(
        self,
        *,
        run: RunInfo,
        project: str,
        entity: str | None,
        mode: WandbMode | str,
        group: str | None,
        tags: list[str],
        init_timeout: float,
        finish_timeout: float,
        log_plots: bool,
        **unexpected: Any,
    ) -> None:
        super().__init__(run=run)
        # An API key is refused before anything can echo it; any other unknown key came with a "+".
        for key in SECRET_KEYS:
            if key in unexpected:
                raise SecretInConfig(
                    f"logger.wandb.{key}",
                    str(unexpected[key]),
                    "the API key never goes in a config: set WANDB_API_KEY or run `wandb login`",
                )
        unexpected_options("wandb", unexpected)
        try:
            self.mode = WandbMode(mode.value if isinstance(mode, WandbMode) else mode)
        except ValueError:
            raise ConfigError("logger.wandb.mode", mode, f"one of {', '.join(m.value for m in WandbMode)}") from None
        for key, seconds in (("init_timeout", init_timeout), ("finish_timeout", finish_timeout)):
            if not (isinstance(seconds, (int, float)) and seconds > 0):
                raise ConfigError(f"logger.wandb.{key}", seconds, "must be a number of seconds > 0")
        self.project, self.entity, self.group, self.tags = project, entity, group, list(tags)
        self.init_timeout, self.finish_timeout, self.log_plots = float(init_timeout), float(finish_timeout), log_plots
        self.run_dir = Path(run.run_dir)
        self.run: Any = None
        self.record: dict[str, Any] = {"mode": "disabled"}  # what summary.json gets under "wandb"
        self._secret: str | None = None  # the API key, only to keep it out of what lrexp writes
        self._started = False
        self._log_failed = False
        self._last_step = 0  # the x-axis position of the plots, logged at the end

    # --- the Logger interface --------------------------------------------------------------------

    def start(self, step: int = 0) -> None:
        # W&B keys every row by the step metric, so rows a resumed run logs again replace their twins.
        if self._started:
            return
        self._started = True
        mode, reason = self._requested_mode()
        if mode == "disabled":
            self.record = {"mode": "disabled"}
            return
        try:
            self._open(mode, reason)
        except Exception as e:
            self.run = None
            self.record = {"mode": "failed", "error": self._redact(describe(e))}  # W&B's mode, not the run's status
            log.warning("W&B: could not start a run (%s); training goes on without W&B", self.record["error"])

    def log_row(self, row: Row) -> None:
        self.start()  # for callers that do not call start() (the first row is early enough)
        self._last_step = int(row["step"])
        if self.run is None or self._log_failed:
            return
        try:
            self.run.log({k: v for k, v in row.items() if v is not None})
        except Exception as e:
            # One warning, then stop sending rows: a broken W&B run must not flood the log every row.
            self._log_failed = True
            log.warning("W&B: logging failed (%s); later rows are not sent to W&B (metrics.csv has them)", self._redact(str(e)))

    def summary_fields(self) -> dict[str, Any]:
        self.start()
        return {"wandb": dict(self.record)}

    def finish(self, summary: Summary, run_dir: Path) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        status = summary.status
        try:
            run.summary.update(summary_scalars(summary.to_json()))
            if status is not Status.COMPLETED:
                run.tags = (*tuple(run.tags or ()), status.value)  # diverged / interrupted runs filter in one click
            if self.log_plots and status is not Status.INTERRUPTED:
                self._log_plots(run, run_dir, self._last_step)
        except Exception as e:
            log.warning("W&B: could not record the summary or plots (%s); the local record is complete", self._redact(str(e)))
        try:
            # finish() waits for the upload at most finish_timeout: a preempted job must still reach its
            # requeue (submitit's handler runs after the loggers) within the cluster's grace period.
            if status is Status.INTERRUPTED:
                run.mark_preempting()  # shown as preempted; run.resume=true continues the same W&B run
            run.finish(exit_code=1 if status is Status.INTERRUPTED else 0)
        except Exception as e:
            log.warning(
                "W&B: finishing the run failed (%s); `wandb sync %s` uploads what is on disk",
                self._redact(str(e)),
                self.run_dir / self.record["dir"],
            )

    def abort(self, error: str) -> None:
        """A job that raised: its W&B run ends as failed now, not when the next job (or the process) ends."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.summary.update({"status": Status.FAILED.value, "error": self._redact(error)})
            run.finish(exit_code=1)
        except Exception as e:
            log.warning("W&B: could not mark the run failed (%s)", self._redact(str(e)))

    # --- start-up ------------------------------------------------------------------------------------

    def _requested_mode(self) -> tuple[str, str]:
        """The mode to start in and why; ``auto`` resolves to online only once credentials are known."""
        mode = self.mode.value
        if mode == "auto":
            env = os.environ.get("WANDB_MODE", "").strip().lower()
            if env in ENV_MODES:
                return ENV_MODES[env], f"WANDB_MODE={env}"
        return mode, f"mode={mode}"

    def _open(self, mode: str, reason: str) -> None:
        import wandb  # here, not at import: only runs that use W&B pay its ~1 s import

        setup_quietly(wandb)
        if not self.run_info.concurrent:  # in a batch, the other open runs are the batch's own
            close_leftover_run(wandb)
        has_key, self._secret = configured_credentials(wandb)
        fallback_after: float | None = None
        online_error: str | None = None
        if mode in ("auto", "online"):
            if not has_key:
                asked_online = mode == "online"
                mode, reason = "offline", "no API key configured"
                if asked_online:
                    reason = "mode=online but no API key is configured: set WANDB_API_KEY or run `wandb login`"
            elif _online_failed is not None:
                mode, reason = "offline", f"online start-up already failed in this process ({_online_failed})"
            else:
                t0 = time.monotonic()
                try:
                    self.run = self._init(wandb, "online")
                    mode, reason = "online", "API key configured" if reason == "mode=auto" else reason
                except Exception as e:
                    fallback_after = time.monotonic() - t0
                    online_error = self._redact(describe(e))
                    remember_online_failure(online_error)
                    mode, reason = "offline", f"online start-up failed after {fallback_after:.1f} s: {online_error}"
        if self.run is None:
            self.run = self._init(wandb, mode)
        self.record = self._describe(mode, reason)
        if online_error is not None:
            self.record.update(online_error=online_error, fallback_after_s=round(fallback_after or 0.0, 3))
        if mode == "online":
            log.info("W&B: logging online to %s", self.record.get("url"))
        elif mode == "offline":
            # The one line a user needs: where the run is and how to upload it.
            level = logging.INFO if reason == "no API key configured" or reason.startswith("WANDB_MODE") else logging.WARNING
            log.log(level, "W&B: offline (%s); upload later with: %s", reason, self.record["sync"])

    def _init(self, wandb: Any, mode: str) -> Any:
        info = self.run_info
        resume_id = previous_run_id(self.run_dir) if info.config.get("run", {}).get("resume") else None
        settings = wandb.Settings(
            init_timeout=max(1.0, self.init_timeout - GIVE_UP_MARGIN_S),
            finish_timeout=self.finish_timeout,
            x_disable_viewer=True,
            silent=True,
        )
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.group or info.group,
            name=info.name,
            job_type=info.job_type,
            tags=[*info.tags, *self.tags],
            config=self._run_config(),
            dir=str(self.run_dir),
            mode=mode,
            id=resume_id,
            resume="allow" if resume_id else None,
            allow_val_change=bool(resume_id),  # run.resume itself flips to true in the config
            # Several jobs share a process: each gets its own run; runs trained together are open together.
            reinit="create_new" if info.concurrent else "finish_previous",
            settings=settings,
        )
        # The x-axis of every metric is metrics.csv's step: W&B's own _step counts log calls, and a resumed
        # run re-logs the steps after its last checkpoint, which _step would drop.
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)
        return run

    def _run_config(self) -> dict[str, Any]:
        """The fully resolved composed config, plus the option names (``choices``) to group runs by."""
        config: dict[str, Any] = redacted({**self.run_info.config, "choices": dict(self.run_info.choices)}, self._secret)
        return config

    def _describe(self, mode: str, reason: str) -> dict[str, Any]:
        run = self.run
        sync_dir = Path(run.settings.sync_dir)
        record = {
            "mode": mode,
            "id": run.id,
            "path": "/".join(p for p in (run.entity if mode == "online" else self.entity, run.project, run.id) if p),
            "project": run.project,
            "entity": (run.entity or None) if mode == "online" else self.entity,
            "group": run.group or None,
            "name": run.name,
            "dir": os.path.relpath(sync_dir, self.run_dir) if sync_dir.is_relative_to(self.run_dir) else str(sync_dir),
            "reason": self._redact(reason),
        }
        if mode == "online":
            record["url"] = run.url
        else:
            # A resumed offline run is a second directory with the same id: sync them in order.
            parts = sorted({*map(str, sync_dir.parent.glob(f"offline-run-*-{run.id}")), str(sync_dir)})
            record["sync"] = "wandb sync " + " ".join(parts)
        return record

    # --- finish ----------------------------------------------------------------------------------------

    @staticmethod
    def _log_plots(run: Any, run_dir: Path, step: int) -> None:
        """plots/*.png as images, at the run's last logged step (the x-axis every other metric uses)."""
        import wandb

        images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted((run_dir / PLOTS_DIR).glob("*.png"))}
        if images:
            run.log({STEP: step, **images})

    def _redact(self, text: str) -> str:
        text = redacted(text, self._secret)
        return text


# --- helpers (module level: each one concern, testable alone) -----------------------------------------


def setup_quietly(wandb: Any) -> None:
    """wandb's process-wide settings, before it prints anything.

    Silent: lrexp says what matters in one line, where wandb prints a banner (and "Loaded credentials
    ..."). No viewer: the "who am I" query costs ~10 s when the server cannot be reached.
    """
    wandb.setup(settings=wandb.Settings(silent=True, x_disable_viewer=True))
    # wandb's own usage analytics (OpenTelemetry, to the W&B server) flush when the process exits: against
    # a server that never answers, that held the process ~20 s after the run had finished. lrexp sends none.
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):  # a wandb without them: nothing to turn off
        pass


def close_leftover_run(wandb: Any) -> None:
    """Finish a W&B run that an earlier job in this process left open (it raised before finish())."""
    if wandb.run is not None:
        log.warning("W&B: an earlier job's run %s was still open (that job failed); finishing it as failed", wandb.run.id)
        try:
            wandb.run.finish(exit_code=1)
        except Exception as e:
            log.warning("W&B: could not finish it (%s)", e)


def remember_online_failure(error: str) -> None:
    global _online_failed
    _online_failed = error


def previous_run_id(run_dir: Path) -> str | None:
    """The W&B run id of the run being resumed: from its summary.json, else from wandb's latest-run link."""
    try:
        recorded = read_summary(run_dir).extra.get("wandb", {}).get("id") if (run_dir / SUMMARY_FILE).is_file() else None
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return recorded
    latest = run_dir / "wandb" / "latest-run"
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve().name.rsplit("-", 1)[-1] or None  # offline-run-DATE_TIME-ID
    return None


def summary_scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary.json values W&B shows as summary columns: numbers, strings and flags, finite only."""
    out = {}
    for key, value in summary.items():
        if key == "wandb" or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue  # a diverged run's inf/NaN loss: W&B drops it anyway; status says diverged
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
    return out
