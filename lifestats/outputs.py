"""Report files: checked before the first request, written atomically after the last.

A report path that cannot be written must stop the job before it crawls (exit 2), not after an hour
of crawling; and a reader (or a crash) must never see half a file, so every file is written to a
temporary name in its own directory and renamed over the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Final

import orjson

from .errors import ConfigError

STDOUT = "-"


def report_json(report: dict[str, Any]) -> bytes:
    """The JSON report as written to disk: indented, UTF-8, one trailing newline.

    orjson is fast but refuses integers beyond 64 bits; an id like that (which the API may send as an item)
    is written by the standard library instead of failing the report.
    """
    try:
        return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    except orjson.JSONEncodeError:
        return json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _special(target: Path) -> bool:
    """Whether ``target`` exists and is not a regular file (through any symlink): a device, a pipe, a
    socket, such as ``/dev/stdout`` or a FIFO. Those are written to as they are; renaming a file over
    them would destroy them (and the reader would never see the report)."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there yet (the probe says whether it can be)
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename; through a
    symlink, to the file it points at (the link stays); a device or a pipe is written to directly."""
    target = Path(path)
    if _special(target):
        with open(target, "wb") as handle:
            handle.write(data)
        return
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(target)
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def check_file(path: str, flag: str) -> None:
    """Refuse (exit 2) a file path that cannot be written: a directory, a parent that cannot exist, no
    permission, a name too long for the temporary file beside it."""
    if not path:
        raise ConfigError(f"{flag}: the path is empty; give a file name")
    target = Path(path)
    try:
        if target.is_dir():
            raise ConfigError(f"{flag} {path}: is a directory; give a file name")
        if target.exists() and not os.access(target, os.W_OK):
            raise ConfigError(f"{flag} {path}: the file is not writable")
        if _special(target):
            return  # written to as it is (see write_atomic)
        real = Path(os.path.realpath(target)) if target.is_symlink() else target
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    _probe(real.parent, flag, path, _temporary(real).name)


def check_dir(path: str, flag: str) -> None:
    """Refuse (exit 2) a directory for report files that cannot be created or written into."""
    if not path:
        raise ConfigError(f"{flag}: the path is empty; give a directory")
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {path}: is a file; give a directory")
    _probe(target, flag, path)


def _probe(directory: Path, flag: str, shown: str, name: str | None = None) -> None:
    """Create ``directory`` if needed and a file in it (named ``name``: the temporary file a write will
    make), then remove the file: the one test that does not lie."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not directory.is_dir():
            raise NotADirectoryError(directory)
        probe = directory / (name or f".lifestats-probe.{secrets.token_hex(4)}")
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(descriptor)
        probe.unlink()
    except FileExistsError:
        raise ConfigError(f"{flag} {shown}: {directory} exists and is not a directory") from None
    except NotADirectoryError:
        raise ConfigError(f"{flag} {shown}: a part of the path is a file, not a directory") from None
    except PermissionError:
        raise ConfigError(f"{flag} {shown}: no permission to write in {directory}") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {shown}: cannot write in {directory}: {exc.strerror or exc}") from None


# The fewest bytes a JSON report, or the CSV files of one, take (a run that counted nothing); an HTML
# report takes at least the chart library and styles it embeds (report_html.smallest_html).
SMALLEST_JSON: Final = 1024
SMALLEST_CSV: Final = 1024


def check_room(needs: list[tuple[str, str, int, int]]) -> None:
    """Refuse (exit 2) report paths on a disk with less room than the smallest reports it would hold
    (``needs``: each report's flag, path, fewest bytes and number of files; those on one disk are summed,
    each file rounded up to whole blocks of the disk, as it takes them). An empty probe file fits on a full
    disk, so without this the crawl would run and the report fail at its end. A disk with room for the
    smallest but not for these reports still fails at the end, keeping the work: the same command then
    writes them without crawling."""
    disks: dict[int, tuple[Path, int, list[str]]] = {}
    for flag, path, fewest, files in needs:
        target = Path(path).absolute()
        if _special(target):
            continue  # a pipe or a device: no disk to fill
        directory = target if target.is_dir() else target.parent
        try:
            device = os.stat(directory).st_dev
        except OSError:
            continue
        block = block_bytes(directory)
        each = -(-fewest // files)  # a file's share, in whole blocks
        least = files * -(-each // block) * block
        _, total, flags = disks.get(device, (directory, 0, []))
        disks[device] = (directory, total + least, [*flags, flag])
    for directory, least, flags in disks.values():
        free = free_bytes(directory)
        if free is not None and free < least:
            raise ConfigError(
                f"{' and '.join(flags)}: the disk holding {directory} has {free:,} bytes free, less than the "
                f"smallest report it would hold ({least:,} bytes): free some space or write the report elsewhere"
            )


def block_bytes(directory: Path) -> int:
    """The size of the blocks a file takes on the file system of ``directory`` (1 when it cannot say)."""
    try:
        return max(1, int(os.statvfs(directory).f_frsize))
    except (OSError, AttributeError, ValueError):
        return 1


def free_bytes(directory: Path) -> int | None:
    """Bytes this process may still write on the file system of ``directory`` (root may use the blocks kept
    for it), None when the system cannot say."""
    try:
        stats = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    if stats.f_blocks == 0:  # a file system that gives no sizes (some FUSE or network ones): unknown
        return None
    blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    return int(blocks * stats.f_frsize)
