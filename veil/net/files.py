"""Writing keys, certificates and cluster files: never through a symbolic link.

A private key is created with mode 0600 from its first byte (no window where another
user can read it) and with ``O_EXCL | O_NOFOLLOW``: if the name already exists — a file,
or a link someone planted to make veil overwrite another file — the write fails.
``force`` replaces an existing *regular* file by writing a new one beside it and renaming
it over (a rename replaces the name itself, never what a link points to); a symbolic link
is refused even then.
"""

from __future__ import annotations

import os
from pathlib import Path

_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; veil never writes keys or "
                              f"certificates through one (remove it, or choose another --out)")


def _create(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, _EXCL, mode)
    try:
        os.fchmod(fd, mode)                      # the umask may have dropped bits we want
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_private(path: str | Path, data: bytes, *, force: bool = False) -> None:
    """Write a private key: mode 0600, never through a link, never over a file unless
    ``force`` (and never over a link, even then)."""
    _write(Path(path), data, 0o600, force)


def write_public(path: str | Path, data: bytes, *, force: bool = False) -> None:
    """Write a certificate or cluster file (mode 0644) with the same link rules."""
    _write(Path(path), data, 0o644, force)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    _refuse_link(path)
    if not force or not path.exists():
        try:
            _create(path, data, mode)
        except FileExistsError:
            raise FileExistsError(f"{path} already exists; choose another --out or pass "
                                  f"--force to overwrite it") from None
        return
    if not path.is_file():
        raise FileExistsError(f"{path} exists and is not a regular file; not overwriting it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.unlink(missing_ok=True)                  # a leftover (even a link) is only a name
    _create(tmp, data, mode)
    os.replace(tmp, path)
