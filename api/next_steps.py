"""What to open next: the lines ``banditlake demo`` ends with and ``serve`` starts with."""

from __future__ import annotations

from pathlib import Path

from api.settings import Settings

__all__ = ["base_url", "data_location", "next_steps"]


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a service bound to ``host:port``."""
    # A wildcard bind answers on loopback too; the wildcard itself is no address to open.
    shown = host if host not in {"0.0.0.0", "::", ""} else "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def data_location(settings: Settings) -> str:
    """Where the SQL store, the lake and the model files are, credentials left out."""
    home = settings.home.resolve()
    lake, models = _shown(settings.lake_uri), _shown(settings.models_uri)
    embedded = settings.database_url == f"sqlite:///{settings.home / 'banditlake.db'}"
    if embedded and all(_under(where, home) for where in (lake, models)):
        return f"{home} (SQLite store, Parquet lake, model files)"
    store = settings.database_url.split("@")[-1]
    return f"store {store}, lake {lake}, models {models}"


def _shown(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).resolve())


def _under(where: str, home: Path) -> bool:
    return "://" not in where and Path(where).is_relative_to(home)


def next_steps(settings: Settings, *, host: str, port: int) -> list[str]:
    """Three lines: the dashboard, the REST API's documentation and the data directory."""
    url = base_url(host, port)
    token = "?token=<admin token>" if settings.admin_token is not None else ""
    return [
        f"  dashboard  {url}/dashboard{token}",
        f"  API docs   {url}/docs",
        f"  data       {data_location(settings)}",
    ]
