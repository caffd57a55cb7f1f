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
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lrexp.config import WandbLoggerConfig
from lrexp.errors import ConfigError, SecretInConfig
from lrexp.loggers import Logger
from lrexp.record import PLOTS_DIR, SUMMARY_FILE, Row, read_summary

log = logging.getLogger(__name__)

# The x-axis of every metric: the optimizer step, as in metrics.csv (W&B's own _step counts log calls,
# and a resumed run re-logs steps after its last checkpoint, which _step would drop).
STEP_METRIC = "step"
# wandb keeps retrying until its init_timeout and needs up to ~0.6 s more to give up (measured here with
# a closed port and with a server that never answers); it gets this much less than our bound.
GIVE_UP_MARGIN_S = 1.0
# wandb's own WANDB_MODE values, honoured in auto mode (dryrun is its old name for offline).
ENV_MODES = {"online": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}

# Once online start-up has failed in this process, later jobs of the same sweep (basic and joblib
# launchers run several jobs per process) go offline at once instead of each waiting init_timeout.
_online_failed: Optional[str] = None


def wandb_options(node: Mapping[str, Any]) -> WandbLoggerConfig:
    """logger.wandb checked against its schema (lrexp.config.WandbLoggerConfig; conf/logger/wandb.yaml
    documents each key), for nodes that did not come through Hydra's compose or were extended with ``+``.

    An API key is refused before OmegaConf sees it, so that no error message can echo it.
    """
    values = OmegaConf.to_container(node) if OmegaConf.is_config(node) else dict(node)
    for key in ("api_key", "key"):
        if key in values:
            raise SecretInConfig(f"logger.wandb.{key}", str(values[key]), "the API key never goes in a config: set WANDB_API_KEY or run `wandb login`")
    try:
        options = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(WandbLoggerConfig), values))
    except OmegaConfBaseException as e:
        key = str(e.full_key or "").split(".")[0]
        allowed = e.msg.splitlines()[0] if e.msg else type(e).__name__
        raise ConfigError(f"logger.wandb.{key}", values.get(key), allowed) from None
    for key in ("init_timeout", "finish_timeout"):
        if not getattr(options, key) > 0:
            raise ConfigError(f"logger.wandb.{key}", getattr(options, key), "must be a number of seconds > 0")
    return options


class WandbLogger(Logger):
    def __init__(self, node: Mapping[str, Any], run_info: Mapping[str, Any]) -> None:
        self.options = wandb_options(node)  # a bad value fails before training, as one line
        self.info = run_info
        self.run_dir = Path(run_info["run_dir"])
        self.run: Any = None
        self.record: Dict[str, Any] = {"mode": "disabled"}  # what summary.json gets under "wandb"
        self._secret: Optional[str] = None  # the API key, only to keep it out of what lrexp writes
        self._started = False
        self._log_failed = False
        self._last_step = 0  # the x-axis position of the plots, logged at the end

    # --- the Logger interface --------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        mode, reason = self._requested_mode()
        if mode == "disabled":
            self.record = {"mode": "disabled"}
            return
        try:
            self._open(mode, reason)
        except Exception as e:  # noqa: BLE001 - whatever W&B does, training goes on
            self.run = None
            self.record = {"mode": "failed", "error": self._redact(f"{type(e).__name__}: {e}")}
            log.warning("W&B: could not start a run (%s); training goes on without W&B", self.record["error"])

    def log_row(self, row: Row) -> None:
        self.start()  # for callers that do not call start() (the first row is early enough)
        self._last_step = int(row["step"])
        if self.run is None or self._log_failed:
            return
        try:
            self.run.log({k: v for k, v in row.items() if v is not None})
        except Exception as e:  # noqa: BLE001
            # One warning, then stop sending rows: a broken W&B run must not flood the log every row.
            self._log_failed = True
            log.warning("W&B: logging failed (%s); later rows are not sent to W&B (metrics.csv has them)", self._redact(str(e)))

    def summary_fields(self) -> Dict[str, Any]:
        self.start()
        return {"wandb": dict(self.record)}

    def finish(self, summary: Dict[str, Any], run_dir: Path) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        status = summary.get("status")
        try:
            run.summary.update(summary_scalars(summary))
            if status and status != "completed":
                run.tags = tuple(run.tags or ()) + (status,)  # diverged / interrupted runs filter in one click
            if self.options.log_plots and status != "interrupted":
                self._log_plots(run, run_dir, self._last_step)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B: could not record the summary or plots (%s); the local record is complete", self._redact(str(e)))
        try:
            # finish() waits for the upload at most finish_timeout: a preempted job must still reach its
            # requeue (submitit's handler runs after the loggers) within the cluster's grace period.
            if status == "interrupted":
                run.mark_preempting()  # shown as preempted; run.resume=true continues the same W&B run
            run.finish(exit_code=1 if status == "interrupted" else 0)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B: finishing the run failed (%s); `wandb sync %s` uploads what is on disk", self._redact(str(e)), self.run_dir / self.record["dir"])

    def abort(self, error: str) -> None:
        """A job that raised: its W&B run ends as failed now, not when the next job (or the process) ends."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.summary.update({"status": "failed", "error": self._redact(error)})
            run.finish(exit_code=1)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B: could not mark the run failed (%s)", self._redact(str(e)))

    # --- start-up ------------------------------------------------------------------------------------

    def _requested_mode(self) -> Tuple[str, str]:
        """The mode to start in and why; ``auto`` resolves to online only once credentials are known."""
        mode = self.options.mode.value
        if mode == "auto":
            env = os.environ.get("WANDB_MODE", "").strip().lower()
            if env in ENV_MODES:
                return ENV_MODES[env], f"WANDB_MODE={env}"
        return mode, f"mode={mode}"

    def _open(self, mode: str, reason: str) -> None:
        import wandb  # here, not at import: only runs that use W&B pay its ~1 s import

        setup_quietly(wandb)
        close_leftover_run(wandb)
        has_key, self._secret = configured_credentials(wandb)
        fallback_after: Optional[float] = None
        online_error: Optional[str] = None
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
                except Exception as e:  # noqa: BLE001 - no network, server down, bad key: go offline
                    fallback_after = time.monotonic() - t0
                    online_error = self._redact(f"{type(e).__name__}: {first_line(e)}")
                    remember_online_failure(online_error)
                    mode, reason = "offline", f"online start-up failed after {fallback_after:.1f} s: {online_error}"
        if self.run is None:
            self.run = self._init(wandb, mode)
        self.record = self._describe(mode, reason)
        if online_error is not None:
            self.record.update(online_error=online_error, fallback_after_s=round(fallback_after, 3))
        if mode == "online":
            log.info("W&B: logging online to %s", self.record.get("url"))
        elif mode == "offline":
            # The one line a user needs: where the run is and how to upload it.
            level = logging.INFO if reason == "no API key configured" or reason.startswith("WANDB_MODE") else logging.WARNING
            log.log(level, "W&B: offline (%s); upload later with: %s", reason, self.record["sync"])

    def _init(self, wandb: Any, mode: str) -> Any:
        info, options = self.info, self.options
        resume_id = previous_run_id(self.run_dir) if info["config"].get("run", {}).get("resume") else None
        settings = wandb.Settings(
            init_timeout=max(1.0, options.init_timeout - GIVE_UP_MARGIN_S),
            finish_timeout=options.finish_timeout,
            x_disable_viewer=True,
            silent=True,
        )
        run = wandb.init(
            project=options.project,
            entity=options.entity,
            group=options.group or info.get("group"),
            name=info.get("name"),
            job_type=info.get("job_type"),
            tags=[*info.get("tags", []), *options.tags],
            config=self._run_config(),
            dir=str(self.run_dir),
            mode=mode,
            id=resume_id,
            resume="allow" if resume_id else None,
            allow_val_change=bool(resume_id),  # run.resume itself flips to true in the config
            reinit="finish_previous",  # several jobs share a process: each gets its own run
            settings=settings,
        )
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC)
        return run

    def _run_config(self) -> Dict[str, Any]:
        """The fully resolved composed config, plus the option names (``choices``) to group runs by."""
        config = dict(self.info["config"])
        config["choices"] = dict(self.info.get("choices") or {})
        return redacted(config, self._secret, os.environ.get("WANDB_API_KEY"))

    def _describe(self, mode: str, reason: str) -> Dict[str, Any]:
        run = self.run
        sync_dir = Path(run.settings.sync_dir)
        record = {
            "mode": mode,
            "id": run.id,
            "path": "/".join(p for p in (run.entity if mode == "online" else self.options.entity, run.project, run.id) if p),
            "project": run.project,
            "entity": (run.entity or None) if mode == "online" else self.options.entity,
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
            run.log({STEP_METRIC: step, **images})

    def _redact(self, text: str) -> str:
        return redacted(text, self._secret, os.environ.get("WANDB_API_KEY"))


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


def configured_credentials(wandb: Any) -> Tuple[bool, Optional[str]]:
    """Whether wandb has credentials (env, .netrc, settings file) and the API key if it is one.

    Without prompting and without network: wandb's own lookup with ``prompt=False``. ``wandb.login``
    would do the same lookup but also ask the server who the key belongs to (seconds without network).
    """
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:  # a wandb without wbauth: the public check
        return bool(wandb.login(prompt=False, verify=False)), None
    try:
        settings = wandb_setup.singleton().settings
        auth = wbauth.authenticate_session(
            host=settings.base_url, source="lrexp", prompt=False, verify=False, update_session=False
        )
    except Exception:  # noqa: BLE001 - a malformed key counts as configured: online start-up says why it fails
        return True, os.environ.get("WANDB_API_KEY")
    return auth is not None, getattr(auth, "api_key", None)


def close_leftover_run(wandb: Any) -> None:
    """Finish a W&B run that an earlier job in this process left open (it raised before finish())."""
    if wandb.run is not None:
        log.warning("W&B: an earlier job's run %s was still open (that job failed); finishing it as failed", wandb.run.id)
        try:
            wandb.run.finish(exit_code=1)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B: could not finish it (%s)", e)


def remember_online_failure(error: str) -> None:
    global _online_failed
    _online_failed = error


def previous_run_id(run_dir: Path) -> Optional[str]:
    """The W&B run id of the run being resumed: from its summary.json, else from wandb's latest-run link."""
    try:
        recorded = read_summary(run_dir).get("wandb", {}).get("id") if (run_dir / SUMMARY_FILE).is_file() else None
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return recorded
    latest = run_dir / "wandb" / "latest-run"
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve().name.rsplit("-", 1)[-1] or None  # offline-run-DATE_TIME-ID
    return None


def summary_scalars(summary: Mapping[str, Any]) -> Dict[str, Any]:
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


def redacted(obj: Any, *secrets: Optional[str]) -> Any:
    """``obj`` with every occurrence of the secrets replaced by ``***`` (strings, in dicts and lists)."""
    secrets_ = [s for s in secrets if s and len(s) >= 8]  # a short value would redact ordinary text
    if not secrets_:
        return obj
    if isinstance(obj, str):
        for s in secrets_:
            obj = obj.replace(s, "***")
        return obj
    if isinstance(obj, dict):
        return {k: redacted(v, *secrets_) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redacted(v, *secrets_) for v in obj)
    return obj


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
