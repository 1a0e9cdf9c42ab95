"""Where ferry keeps its state, read from the environment once per command, and the file modes that keep it
private: ``FERRY_HOME`` 0700; the store file, logs and key files 0600 (they hold ciphertext, names of every
target, and — key files — the key itself)."""

from __future__ import annotations

import errno
import getpass
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from snapshots.errors import StoreError


@dataclass(frozen=True)
class Settings:
    """FERRY_HOME, the store URL, and who is acting (for the audit log)."""

    home: Path
    database_url: str
    actor: str
    feed: Path | None = None
    """``FERRY_FEED_DIR``: machines that push packages (CI) and machines that deploy them (``ferry serve``,
    workers) must see the same feed directory, e.g. mounted from shared storage."""

    @property
    def feed_dir(self) -> Path:
        return self.feed or self.home / "feed"

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"

    def ensure_home(self) -> Path:
        """Create FERRY_HOME 0700 (and tighten one an older ferry made 0755)."""
        if self.home.exists() and not self.home.is_dir():
            raise StoreError(f"FERRY_HOME {self.home} is not a directory")
        try:
            return private_dir(self.home)
        except OSError as exc:
            raise StoreError(f"FERRY_HOME {self.home}: {exc.strerror or exc}") from None

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("FERRY_HOME") or Path.home() / ".ferry").expanduser()
        url = os.environ.get("FERRY_DATABASE_URL") or f"sqlite:///{home / 'ferry.db'}"
        actor = os.environ.get("FERRY_USER") or _login_name()
        feed = Path(os.environ["FERRY_FEED_DIR"]).expanduser() if os.environ.get("FERRY_FEED_DIR") else None
        return cls(home=home, database_url=url, actor=actor, feed=feed)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _tighten(path: Path, mode: int) -> None:
    """Take group/other bits away from a path this user owns (never touches someone else's)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        try:
            os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
        except OSError as exc:
            if exc.errno != errno.EROFS:  # a read-only file system: nobody can loosen it either
                raise


def private_dir(path: Path) -> Path:
    """A directory only this user can enter (0700)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        if not path.is_dir():  # a read-only file system answers EROFS even for a directory that exists
            raise
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty 0600 when missing; tighten it when it exists looser."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)
    except OSError:
        if not path.exists():
            raise
        _tighten(path, 0o600)  # read-only file system: it exists, nothing to create
    return path


def open_private_log(path: Path) -> int:
    """A file descriptor appending to a 0600 log file (created so, never readable by others in between)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _tighten(path, 0o600)
    return fd
