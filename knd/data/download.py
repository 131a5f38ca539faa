"""Data-download stage: fill the raw data directory from the configured source (`data.source`).

`ravdess` and `local` archives are fetched and unpacked, a `local` folder is copied, and
`manifest` sources leave one combined manifest (`manifest.csv`) pointing at the listed files.
Downloads resume after a dropped connection and are checksum-verified; only a complete,
verified archive gets its final name, and a fully filled directory is swapped into place, so a
killed run never leaves behind anything a later run would trust.
"""

import errno
import hashlib
import logging
import os
import re
import shutil
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from knd.config import DataConfig
from knd.data.manifest import MANIFEST_FILE, read_manifests, write_manifest
from knd.errors import KndError
from knd.files import replacing

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5  # seconds before the first retry; doubles on each further retry
CHUNK_SIZE = 1 << 16
JUNK_PREFIX = "__MACOSX/"  # resource forks added by macOS zip tools
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
LOCAL_COPY_HINT = "point data.url at a local copy of the archive (file:// URL or path)"


class _TransientError(Exception):
    """A failure worth retrying: a network hiccup or an overloaded server."""


def fetch_data(data: DataConfig, raw_dir: Path, download_dir: Path = Path("data/download")) -> Path:
    """Fill `raw_dir` from `data.source`; every failure raises `KndError`."""
    raw_dir = Path(raw_dir)
    if data.source == "manifest":
        rows = read_manifests(data.manifests)
        with replacing(raw_dir) as tmp:
            write_manifest(rows, tmp / MANIFEST_FILE)
        log.info("%s: %d clips listed by %s", raw_dir / MANIFEST_FILE, len(rows), data.manifests)
        return raw_dir
    if data.source == "local" and Path(data.path).is_dir():
        with replacing(raw_dir) as tmp:
            shutil.copytree(data.path, tmp)
        return raw_dir
    url = data.path if data.source == "local" else data.url
    return download_and_extract(url, data.md5 or None, raw_dir, download_dir)


def download_and_extract(
    url: str,
    md5: str | None,
    raw_dir: Path,
    download_dir: Path = Path("data/download"),
    retries: int = 5,
    timeout: float = 30.0,
) -> Path:
    """Fill `raw_dir` with the contents of the zip archive at `url`, downloading only if needed.

    `url` is an http(s):// or file:// URL or a filesystem path. Every failure raises `KndError`.
    """
    raw_dir, download_dir = Path(raw_dir), Path(download_dir)
    md5 = (md5 or "").strip().lower()
    if not md5:
        log.warning("data.md5 is not set: %s will be used without an integrity check", url)
    try:
        archive = _fetch(url, md5, download_dir, retries, timeout)
        _extract(archive, raw_dir)
    except OSError as e:  # whatever else the file system refused: permissions, read-only disk...
        raise KndError(f"file system error while preparing {raw_dir} from {url}: {e}") from e
    return raw_dir


def _fetch(url: str, md5: str, download_dir: Path, retries: int, timeout: float) -> Path:
    """Return a verified local copy of the archive at `url`."""
    parsed = urlparse(url)
    if parsed.scheme.lower() in ("http", "https"):
        return _fetch_http(url, md5, download_dir, retries, timeout)
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise KndError(
                f"bad file URL {url}: it needs an absolute path (file:///abs/path.zip); "
                "for a relative path drop the file:// prefix"
            )
        path = Path(url2pathname(parsed.path))
    elif "://" in url:
        raise KndError(f"unsupported URL {url}: use http(s)://, file:// or a filesystem path")
    else:
        path = Path(url)
    if not path.is_file():
        raise KndError(f"archive not found: {path} (data.url={url}). Check data.url")
    _verify(path, md5, source=url, downloaded=False)
    return path


def _fetch_http(url: str, md5: str, download_dir: Path, retries: int, timeout: float) -> Path:
    """Download into `download_dir`, reusing an archive an earlier run completed."""
    archive = download_dir / (Path(unquote(urlparse(url).path)).name or "archive.zip")
    if archive.is_file():
        if not md5 or _md5sum(archive) == md5:
            log.info("using %s downloaded earlier", archive)
            return archive
        log.warning("%s does not match data.md5; downloading it again", archive)
        archive.unlink()
    download_dir.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    _download(url, part, retries, timeout)
    _verify(part, md5, source=url, downloaded=True)
    os.replace(part, archive)
    return archive


def _download(url: str, part: Path, retries: int, timeout: float) -> None:
    """Download `url` into `part`, retrying transient failures with exponential backoff."""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_BASE * 2 ** (attempt - 1))
        try:
            _download_once(url, part, timeout)
            return
        except _TransientError as e:
            error = e
            log.warning("download attempt %d of %d failed: %s", attempt + 1, retries + 1, e)
    attempts = f"{retries + 1} attempt{'s' if retries else ''}"
    raise KndError(
        f"{error} (gave up after {attempts}). Check your connection and rerun "
        f"(the download resumes where it stopped), or {LOCAL_COPY_HINT}"
    )


def _download_once(url: str, part: Path, timeout: float) -> None:
    """One GET into `part`, resuming from what it already holds; `_TransientError` to retry."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # sizes and byte ranges refer to the file itself
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except TRANSIENT_ERRORS as e:
        raise _TransientError(f"cannot reach {url}: {_root_cause(e)}") from e
    except requests.RequestException as e:
        raise KndError(f"cannot download {url}: {e}. Check data.url") from e
    with resp:
        start = _body_start(url, resp)
        if start not in (0, offset):  # the body cannot continue what `part` holds
            part.unlink(missing_ok=True)
            raise _TransientError(f"{url} cannot resume at byte {offset}; restarting from zero")
        length = resp.headers.get("Content-Length", "")
        total = start + int(length) if length.isdigit() else None
        try:
            _stream(resp, part, start, total)
        except TRANSIENT_ERRORS as e:
            raise _TransientError(f"download of {url} broke off: {_root_cause(e)}") from e
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:  # not a prefix of the file: useless for resuming
            part.unlink()
        raise _TransientError(f"download of {url} ended at byte {size} of {total}")


def _body_start(url: str, resp: requests.Response) -> int | None:
    """Archive offset the response body starts at (None: unknown); raises for error statuses."""
    status = resp.status_code
    if status == 429 or status >= 500:
        raise _TransientError(f"{url} answered HTTP {status} {resp.reason}")
    if status == 200:
        return 0
    if status == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        return int(match[1]) if match else None
    if status == 416:  # our partial file is not a prefix of theirs
        return None
    raise KndError(
        f"cannot download {url}: HTTP {status} {resp.reason}. "
        f"Check data.url (the address may be wrong or the file moved), or {LOCAL_COPY_HINT}"
    )


def _stream(resp: requests.Response, part: Path, start: int, total: int | None) -> None:
    """Write the body to `part` at offset `start`, with a progress bar on stderr."""
    try:
        with (
            part.open("ab" if start else "wb") as out,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.stem) as bar,
        ):
            for chunk in resp.iter_content(CHUNK_SIZE):
                out.write(chunk)
                bar.update(len(chunk))
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _disk_full(part, total - start if total is not None else None) from e
        raise


def _verify(path: Path, md5: str, source: str, downloaded: bool) -> None:
    """Fail unless `path` has checksum `md5`; a bad download is deleted so no run trusts it."""
    if not md5:
        return
    got = _md5sum(path)
    if got == md5:
        return
    if downloaded:
        path.unlink()
        todo = "Check data.url and data.md5, or rerun to download it again"
    else:
        todo = f"Check data.md5, or replace {path} with a good copy"
    raise KndError(f"checksum mismatch for {source}: expected md5 {md5}, got {got}. {todo}")


def _md5sum(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _extract(archive: Path, raw_dir: Path) -> None:
    """Unpack `archive` into `raw_dir`, whole or not at all."""
    if not zipfile.is_zipfile(archive):
        raise KndError(f"{archive} is not a zip archive. Check that data.url points at the .zip")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.filename.startswith(JUNK_PREFIX)]
            _refuse_escaping(archive, members, raw_dir)
            with replacing(raw_dir) as tmp:
                _unpack(zf, members, tmp)
    except zipfile.BadZipFile as e:
        raise KndError(f"{archive} is damaged ({e}): delete or replace it and rerun") from e


def _unpack(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path) -> None:
    """Extract `members` into `dest` (`replacing` removes a partial `dest`)."""
    try:
        dest.mkdir(parents=True)
        for member in members:
            zf.extract(member, dest)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _disk_full(dest, sum(m.file_size for m in members)) from e
        raise


def _refuse_escaping(archive: Path, members: list[zipfile.ZipInfo], raw_dir: Path) -> None:
    """Zip-slip guard: fail before extracting anything if a member would land outside raw_dir."""
    root = raw_dir.resolve()
    bad = [m.filename for m in members if not (root / m.filename).resolve().is_relative_to(root)]
    if bad:
        raise KndError(
            f"refusing to extract {archive}: members {', '.join(bad)} would be written outside "
            f"{raw_dir}. The archive is unsafe; check data.url"
        )


def _disk_full(path: Path, needed: int | None) -> KndError:
    amount = f" (about {needed / 1e6:.1f} MB needed)" if needed else ""
    return KndError(f"disk full while writing {path}{amount}. Free some space and rerun")


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of a requests error: the part a user can act on."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return str(exc) or type(exc).__name__
