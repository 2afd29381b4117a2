"""Typed settings from the environment and ``selfheal.toml``, validated at start.

The environment wins over the file. ``RAY_ADDRESS``, ``REDIS_URL``, ``DATABASE_URL`` and
``MLFLOW_TRACKING_URI`` keep their usual names; selfheal's own settings are ``SELFHEAL_*``.
In the file, use the field names (``redis_url = "redis://..."``). With nothing set,
everything runs embedded under ``data_dir``.

A bad value is one :class:`SettingsError` naming the setting, where it came from, and why.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import tomllib
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as PydanticSettingsError

from healing.errors import ConfigError

__all__ = ["Settings", "SettingsError", "load_settings"]

DEFAULT_FILE = "selfheal.toml"
_MIN_KEY_CHARS = 32


class SettingsError(ConfigError):
    """A setting is invalid; names it and its source (the environment or the file)."""


def _alias(env: str, field: str) -> AliasChoices:
    return AliasChoices(env, field)


def _default_data_dir() -> pathlib.Path:
    base = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return pathlib.Path(base) / "selfheal"


class Settings(BaseSettings):
    """Where selfheal's state lives and how it behaves."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ray_address: str | None = Field(None, validation_alias=_alias("RAY_ADDRESS", "ray_address"))
    redis_url: str | None = Field(None, validation_alias=_alias("REDIS_URL", "redis_url"))
    database_url: str | None = Field(
        None, validation_alias=_alias("DATABASE_URL", "database_url"))
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=_alias("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"))
    data_dir: pathlib.Path = Field(
        default_factory=_default_data_dir,
        validation_alias=_alias("SELFHEAL_DATA_DIR", "data_dir"))
    pseudonym_key: SecretStr | None = Field(
        None, validation_alias=_alias("SELFHEAL_PSEUDONYM_KEY", "pseudonym_key"))
    metrics_sample_rate: float = Field(
        0.1, ge=0.0, le=1.0,
        validation_alias=_alias("SELFHEAL_METRICS_SAMPLE_RATE", "metrics_sample_rate"))
    metrics_stream_maxlen: int = Field(
        10_000, ge=100,
        validation_alias=_alias("SELFHEAL_METRICS_STREAM_MAXLEN", "metrics_stream_maxlen"))
    # keep stream entries for this long too (by their events' time; None: only the newest
    # metrics_stream_maxlen entries). Both bound what is kept: a day of a busy service needs
    # a larger maxlen as well (docs/data.md)
    metrics_stream_retention_s: float | None = Field(
        None, gt=0, validation_alias=_alias("SELFHEAL_METRICS_STREAM_RETENTION_S",
                                            "metrics_stream_retention_s"))
    metrics_buffer_max: int = Field(
        100_000, ge=1_000,
        validation_alias=_alias("SELFHEAL_METRICS_BUFFER_MAX", "metrics_buffer_max"))
    audit_flush_interval_s: float = Field(
        0.5, gt=0, le=60,
        validation_alias=_alias("SELFHEAL_AUDIT_FLUSH_INTERVAL_S", "audit_flush_interval_s"))
    # The Ed25519 key that signs audit checkpoints (made on first use, 0600, with a .pub
    # beside it) and the append-only checkpoint log; both outside the database on purpose.
    audit_signing_key_file: pathlib.Path | None = Field(
        None, validation_alias=_alias("SELFHEAL_AUDIT_SIGNING_KEY_FILE",
                                      "audit_signing_key_file"))
    audit_checkpoint_log: pathlib.Path | None = Field(
        None, validation_alias=_alias("SELFHEAL_AUDIT_CHECKPOINT_LOG", "audit_checkpoint_log"))
    audit_checkpoint_interval_s: float = Field(
        5.0, gt=0, le=3600,
        validation_alias=_alias("SELFHEAL_AUDIT_CHECKPOINT_INTERVAL_S",
                                "audit_checkpoint_interval_s"))
    # where the control API listens: loopback unless configured otherwise
    api_host: str = Field("127.0.0.1", validation_alias=_alias("SELFHEAL_API_HOST", "api_host"))
    api_port: int = Field(8000, ge=1, le=65535,
                          validation_alias=_alias("SELFHEAL_API_PORT", "api_port"))
    # one replica cannot die unnoticed: until Serve has started another, nothing answers
    api_replicas: int = Field(1, ge=1, le=16,
                              validation_alias=_alias("SELFHEAL_API_REPLICAS", "api_replicas"))
    # how long a replica keeps a token it accepted before reading it again: a token revoked
    # through another replica is refused by this one after at most this long (0: read every
    # request; the replica that revoked it refuses it at once)
    api_token_cache_s: float = Field(
        5.0, ge=0, le=300,
        validation_alias=_alias("SELFHEAL_API_TOKEN_CACHE_S", "api_token_cache_s"))
    # where alerts go: a Slack incoming webhook (channel "slack") and the PagerDuty Events
    # API v2 (channel "pager"); None: alert steps have nowhere to send and say so
    slack_webhook_url: str | None = Field(
        None, validation_alias=_alias("SELFHEAL_SLACK_WEBHOOK_URL", "slack_webhook_url"))
    pagerduty_events_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        validation_alias=_alias("SELFHEAL_PAGERDUTY_EVENTS_URL", "pagerduty_events_url"))
    pagerduty_routing_key: SecretStr | None = Field(
        None, validation_alias=_alias("SELFHEAL_PAGERDUTY_ROUTING_KEY", "pagerduty_routing_key"))
    # browser origins allowed to call the control API (CORS); empty: none, CORS off
    api_cors_origins: list[str] = Field(
        default_factory=list,
        validation_alias=_alias("SELFHEAL_API_CORS_ORIGINS", "api_cors_origins"))
    # the service catalogue directory (healing.catalogue); None: the embedded default
    catalogue: pathlib.Path | None = Field(
        None, validation_alias=_alias("SELFHEAL_CATALOGUE", "catalogue"))
    # Ray custom resources selfheal's long-lived actors ask for, to keep them on chosen nodes
    # (say {"selfheal": 0.01}, with that resource on the worker nodes); empty: anywhere
    actor_resources: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        validation_alias=_alias("SELFHEAL_ACTOR_RESOURCES", "actor_resources"))
    # cron (UTC) for the scheduled training that `selfheal up` starts (daily at 03:00 by
    # default); "off": none, only `selfheal train` trains
    training_schedule: str | None = Field(
        "0 3 * * *", validation_alias=_alias("SELFHEAL_TRAINING_SCHEDULE", "training_schedule"))
    # the availability SLO of every service (answered through any allowed tier), and who is
    # woken: two_key pages only when a burn-rate alert and a detection agree (either alone
    # is a ticket); detection or burn: one key alone pages; off: no SLO paging
    slo_objective: float = Field(
        0.999, gt=0, lt=1, validation_alias=_alias("SELFHEAL_SLO_OBJECTIVE", "slo_objective"))
    paging: Literal["two_key", "detection", "burn", "off"] = Field(
        "two_key", validation_alias=_alias("SELFHEAL_PAGING", "paging"))
    # the memory a Serve replica may use before it fails (Ray sets no limit on a process
    # unless asked): the predictive monitor forecasts each replica's memory against it
    replica_memory_limit_mb: float = Field(
        2048.0, gt=0, validation_alias=_alias("SELFHEAL_REPLICA_MEMORY_LIMIT_MB",
                                              "replica_memory_limit_mb"))
    # scenario files a scheduled training also learns from and replays candidates through
    # (beside the live history); empty: a leak, a slow degradation and a noisy healthy day
    training_scenarios: list[pathlib.Path] = Field(
        default_factory=list,
        validation_alias=_alias("SELFHEAL_TRAINING_SCENARIOS", "training_scenarios"))

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: the environment over the file (whose values arrive as init kwargs).
        return (env_settings, init_settings)

    @field_validator("training_schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and v.strip().lower() in ("", "off", "none"):
            return None
        if v is not None:
            from learning.schedule import CronSchedule  # noqa: PLC0415

            try:
                CronSchedule(v)
            except ConfigError as exc:
                raise ValueError(exc.reason) from None
        return v

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, v: Any) -> Any:
        if isinstance(v, str | os.PathLike) and str(v).strip() == "":
            raise ValueError("is empty: unset it for the default, or name a directory")
        if isinstance(v, str | os.PathLike) and pathlib.Path(v).exists() \
                and not pathlib.Path(v).is_dir():
            raise ValueError("is a file, not a directory")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - keeps start-up light
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            url = make_url(v)
        except ArgumentError as exc:
            raise ValueError(f"is not a database URL ({exc})") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return v

    @field_validator("pseudonym_key")
    @classmethod
    def _key_length(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < _MIN_KEY_CHARS:
            raise ValueError(f"must be at least {_MIN_KEY_CHARS} characters")
        return v

    # -- what the embedded defaults resolve to ------------------------------------------

    def audit_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'audit.db'}"

    def mlflow_uri(self) -> str:
        """MLflow's tracking store: the configured one, or SQLite in ``data_dir`` (MLflow
        refuses a plain file store by default)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'mlflow.db'}"

    def spool_dir(self) -> pathlib.Path:
        return self.data_dir / "spool"

    def signing_key_file(self) -> pathlib.Path:
        return self.audit_signing_key_file or self.data_dir / "audit-signing.key"

    def checkpoint_log(self) -> pathlib.Path:
        return self.audit_checkpoint_log or self.data_dir / "audit-checkpoints.jsonl"

    def audit_config(self) -> dict[str, Any]:
        """What every audit writer (a process, an actor) needs: plain values, sent to actors."""
        return {"spool_dir": str(self.spool_dir()),
                "database_url": self.audit_database_url(),
                "flush_interval_s": self.audit_flush_interval_s,
                "signing_key_file": str(self.signing_key_file()),
                "checkpoint_log": str(self.checkpoint_log()),
                "checkpoint_interval_s": self.audit_checkpoint_interval_s}

    @classmethod
    def embedded(cls, data_dir: str | os.PathLike[str]) -> Settings:
        """Embedded defaults under ``data_dir``, whatever the environment says: for the demo,
        which must never touch the stores an operator has configured."""
        return _Embedded(data_dir=pathlib.Path(data_dir))

    def pseudonym_key_bytes(self) -> bytes:
        """The configured key, or one made once and kept in ``data_dir`` (mode 0600) so that
        pseudonyms stay stable across restarts of an embedded setup."""
        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode()
        path = self.data_dir / "pseudonym.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


class _Embedded(Settings):
    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # no environment


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read ``path`` (default ``./selfheal.toml`` if it exists) and the environment.

    Raises:
        SettingsError: naming the setting and its source.
    """
    file = pathlib.Path(path) if path is not None else pathlib.Path(DEFAULT_FILE)
    values: dict[str, Any] = {}
    if path is not None or file.exists():
        try:
            values = tomllib.loads(file.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise SettingsError("settings file", str(file), "does not exist") from None
        except OSError as exc:  # a folder, no permission: named, not a traceback
            raise SettingsError("settings file", str(file),
                                f"cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8 text by its specification
            raise SettingsError("settings file", str(file),
                                f"is not UTF-8 text (byte {exc.object[exc.start]:#04x})",
                                source=str(file)) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError("settings file", str(file), f"is not valid TOML ({exc})",
                                source=str(file)) from None
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        field = Settings.model_fields.get(name)
        env_name = _env_name(name, field)
        source = f"environment variable {env_name}" if env_name in os.environ else str(file)
        value = "<redacted>" if name in ("pseudonym_key", "SELFHEAL_PSEUDONYM_KEY") \
            else err.get("input")
        reason = err["msg"].removeprefix("Value error, ")
        raise SettingsError(name, value, reason, source=source) from None
    except PydanticSettingsError as exc:  # a list or mapping that is not JSON
        name = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "settings"
        env_name = _env_name(name, Settings.model_fields.get(name))
        raise SettingsError(name, os.environ.get(env_name), "must be JSON (a list or a "
                            "mapping, as the setting's type says)",
                            source=f"environment variable {env_name}") from None


def _env_name(name: str, field: Any) -> str:
    alias = getattr(field, "validation_alias", None)
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return name.upper()
