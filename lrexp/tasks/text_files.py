"""The text files a task reads from a path the user gives: the file itself, or a folder's files that
match a glob, in a fixed order (tinylm's task.corpus, the Hugging Face tasks' task.data)."""

from __future__ import annotations

from pathlib import Path

from lrexp.errors import ConfigError

# A file is text when its first bytes hold no NUL (git's heuristic): skips .pyc, images, archives.
TEXT_SNIFF_BYTES = 8192


def is_text(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" not in f.read(TEXT_SNIFF_BYTES)


def text_files(location: str, glob: str, *, key: str, glob_key: str, allowed: str) -> list[Path]:
    """``location``'s text files, sorted by their path relative to it; a file or folder that holds none
    is refused in one line naming ``key`` (or ``glob_key``) and what is ``allowed``."""
    path = Path(location).expanduser()
    if not path.exists():
        raise ConfigError(key, location, f"no such file or folder ({allowed})")
    if path.is_file():
        if not is_text(path):
            raise ConfigError(key, location, f"is not a text file (it holds NUL bytes): {allowed}")
        return [path]
    # Hidden folders (.git, .venv, ...) are tooling, not the text a user points at.
    matches = [p for p in path.glob(glob) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    files = sorted((p for p in matches if is_text(p)), key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise ConfigError(key, location, f"holds no text files matching {glob_key}={glob!r} ({allowed})")
    return files
