"""The `.env` file every process reads (settings and the launcher), in one place.

`LEDGERFLOW_DOTENV` names another file, or `off` for none: a test that starts a stack in a
subprocess sets `off`, so a developer's `.env` (an `EMAIL_URL`, a `DATABASE_URL`) never reaches it.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


def dotenv_path() -> Path | None:
    chosen = os.environ.get("LEDGERFLOW_DOTENV", "").strip()
    if chosen.lower() == "off":
        return None
    return Path(chosen) if chosen else BASE_DIR / ".env"


def read_dotenv() -> None:
    """Read the dotenv file, if any, without overriding a variable already set."""
    path = dotenv_path()
    if path is not None and path.exists():
        environ.Env.read_env(path, overwrite=False)
