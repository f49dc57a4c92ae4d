"""Settings, parsed once into a frozen object and passed down.

Sources, later ones win: the built-in defaults below, a TOML file (``[section]`` tables
are flattened, so ``[limits] max_batch_messages`` sets ``max_batch_messages``), then
``REALTIME_<NAME>`` environment variables (``REALTIME_TIMEOUT_S=30``), then CLI flags.
Nothing else in the package reads the environment. Unknown keys fail loudly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from realtime.bayeux.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.toml"
ENV_PREFIX = "REALTIME_"
_NODE_ID_RE = re.compile(r"[a-z0-9]{1,32}")


@dataclass(frozen=True, slots=True)
class Settings:
    # [server]
    host: str = "127.0.0.1"
    port: int = 8000
    mount: str = "/bayeux"
    node_id: str = ""
    log_level: str = "info"
    shutdown_timeout_s: float = 5.0
    # [bayeux]
    timeout_s: float = 45.0
    interval_s: float = 0.0
    session_timeout_s: float = 0.0  # 0 means 2 x timeout_s, as Faye
    sweep_interval_s: float = 1.0
    ping_s: float = 10.0
    connection_types: tuple[str, ...] = (
        "long-polling",
        "cross-origin-long-polling",
        "callback-polling",
        "websocket",
        "eventsource",
        "in-process",
    )
    # [limits]
    max_message_bytes: int = 1_048_576
    max_batch_messages: int = 100
    max_queue_messages: int = 1_000
    max_socket_buffer_bytes: int = 4_194_304
    max_subscriptions_per_client: int = 1_000
    max_sessions: int = 100_000
    max_long_polls: int = 10_000
    # [security]
    apps: tuple[str, ...] = ()  # "APP_ID:API_KEY:API_SECRET"; [[apps]] tables in the file also work
    require_auth: bool = False  # refuse handshakes without a valid token
    credential_fields: tuple[str, ...] = ("token", "signature", "api_key", "auth", "password", "authToken")
    max_sessions_per_ip: int = 2_000
    max_connections_per_ip: int = 2_000
    handshakes_per_ip_per_s: float = 50.0
    publishes_per_client_per_s: float = 200.0
    publishes_per_ip_per_s: float = 2_000.0
    # [http]
    cors_origins: tuple[str, ...] = ("*",)
    ws_origins: tuple[str, ...] = ("*",)
    # [storage]
    feeds_store: str = "sqlite:data/feeds.sqlite3"  # or redis://host:port/db for a cluster
    feeds_durability: str = "normal"  # "full": fsync every commit group
    feeds_cache_mb: int = 512  # SQLite page cache per connection, stores of 1 GiB or more (see sqlite_cache)
    feeds_lock_pages: bool = True  # mlock a mapped store and its WAL (see sqlite_resident)
    feeds_prewarm: bool = True  # load a store that fits feeds_cache_mb into it after start (sqlite_prewarm)
    # [broker]
    broker: str = "memory://"
    routing: str = "filter"
    # [feeds] and [security] belong to other packages; kept raw for them.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def session_expiry_s(self) -> float:
        return self.session_timeout_s if self.session_timeout_s > 0 else 2.0 * self.timeout_s

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "extra"}
_PASSTHROUGH_SECTIONS = ("feeds", "channels", "cluster")


def _cast(name: str, value: Any) -> Any:
    kind = type(getattr(Settings(), name))
    try:
        if kind is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot read {value!r} as {kind.__name__}") from exc


def _app_spec(table: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """An ``[[apps]]`` table -> ``ID:KEY:SECRET``; ``api_secret_env`` names a variable."""
    secret = table.get("api_secret")
    env_name = table.get("api_secret_env")
    if env_name:
        secret = environ.get(str(env_name))
        if not secret:
            raise ConfigError(f"app {table.get('app_id')!r}: environment variable {env_name} is not set")
    if not (table.get("app_id") and table.get("api_key") and secret):
        raise ConfigError(f"an [[apps]] entry needs app_id, api_key and api_secret(_env): {dict(table)!r}")
    return f"{table['app_id']}:{table['api_key']}:{secret}"


def _flatten(doc: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    flat: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "apps" and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            flat["apps"] = [_app_spec(v, environ) for v in value]
        elif key in _PASSTHROUGH_SECTIONS:
            extra[key] = value
        elif isinstance(value, Mapping):
            sub, sub_extra = _flatten(value, environ)
            flat.update(sub)
            extra.update(sub_extra)
        else:
            flat[key] = value
    return flat, extra


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, file, environment and explicit overrides."""
    path = Path(config_file) if config_file else DEFAULT_CONFIG
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    environ = os.environ if env is None else env
    if path.exists():
        with path.open("rb") as fh:
            flat, extra = _flatten(tomllib.load(fh), environ)
        values.update(flat)
    elif config_file:
        raise ConfigError(f"config file not found: {path}")
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX):
            values[key[len(ENV_PREFIX) :].lower()] = raw
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    settings = Settings(**{k: _cast(k, v) for k, v in values.items()}, extra=extra)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if not s.mount.startswith("/") or (s.mount.endswith("/") and s.mount != "/"):
        raise ConfigError(f"mount must start with '/' and not end with one: {s.mount!r}")
    if s.timeout_s <= 0 or s.timeout_s > 600:
        raise ConfigError("timeout_s must be in (0, 600]")
    for name in (
        "max_message_bytes",
        "max_batch_messages",
        "max_queue_messages",
        "max_subscriptions_per_client",
        "max_sessions",
        "max_long_polls",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if s.node_id and not _NODE_ID_RE.fullmatch(s.node_id):
        raise ConfigError(f"node_id must be 1-32 of [a-z0-9]: {s.node_id!r}")
    for name in (
        "max_sessions_per_ip",
        "max_connections_per_ip",
        "handshakes_per_ip_per_s",
        "publishes_per_client_per_s",
        "publishes_per_ip_per_s",
    ):
        if getattr(s, name) < 0:
            raise ConfigError(f"{name} must be 0 (no limit) or positive")
    for spec in s.apps:
        if len(spec.split(":", 2)) != 3 or not all(spec.split(":", 2)):
            raise ConfigError("an app must be APP_ID:API_KEY:API_SECRET")
    if not (s.feeds_store.startswith("sqlite:") or s.feeds_store.startswith(("redis://", "rediss://"))):
        raise ConfigError(f"feeds_store must be sqlite:PATH or a redis:// URL: {s.feeds_store!r}")
    if not 1 <= s.feeds_cache_mb <= 1 << 20:
        raise ConfigError("feeds_cache_mb must be between 1 and 1048576")
    if s.feeds_durability not in ("normal", "full"):
        raise ConfigError("feeds_durability must be 'normal' or 'full'")
    if s.routing not in ("filter", "broadcast"):
        raise ConfigError("routing must be 'filter' or 'broadcast'")
