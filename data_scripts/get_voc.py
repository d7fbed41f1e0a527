#!/usr/bin/env python
"""Download PASCAL VOC 2012 + SBD and build the lists the GAIN experiments use.

    python data_scripts/get_voc.py --root data/voc

Steps (each is skipped when its output already exists, so the script can be rerun):

1. Download ``VOCtrainval_11-May-2012.tar`` (VOC 2012) and ``benchmark.tgz`` (SBD, Hariharan
   et al. 2011) from their official hosts over HTTPS (a plain-HTTP mirror as fallback, checked
   by the same pinned MD5), resuming partial downloads (``<name>.part``) with HTTP range
   requests, and verify their MD5 checksums.
2. Extract them under ``--root``, refusing members that would write outside it (``../`` or
   absolute paths, links pointing out, device files, setuid files). ``.<archive>.extracted``
   is written only once an archive is fully extracted, so an interrupted extraction is redone
   on the next run.
3. Build ``train_aug`` = (SBD train + SBD val + VOC train) - VOC val: the 10,582 images of
   Li et al., Sec. 4.1, and check the 1,449-image VOC ``val`` list.
4. Write ``SegmentationClassAug/<id>.png`` for every ``train_aug`` and ``val`` image: VOC's own
   mask where VOC has one (it has the 255 boundary band), else SBD's mask converted from
   ``cls/<id>.mat``. Each is written to a temporary file and renamed, and a rerun writes again
   any mask that is not a whole PNG (one a killed run of an older version left truncated).
5. Write the random extra-label subsets of 200, 400, 900 and 1,464 images (Tables 3, 4 and 7)
   as ``ImageSets/Segmentation/extra_<n>_seed<s>.txt``. They are drawn from VOC's 1,464
   ``train`` images -- the paper's 1,464 subset is that whole list, and its 78 boat images
   match Table 7's "78 pixel-level labels for boat" -- as nested prefixes of one seeded
   permutation per seed, so the 200 are among the 400. One list serves either pixel masks
   (GAIN_ext^p) or boxes (GAIN_ext^b), so the two can be compared on the same images.

No step needs the network except 1; without a connection the script says so and explains
how to place the archives by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from gainlib.data.extra_labels import pick_subset
from gainlib.data.voc_layout import (
    VOC_CLASSES,
    DataFileError,
    parse_annotation_xml,
    read_id_list,
    read_mask,
    write_atomically,
    write_id_list,
    write_mask_png,
)


@dataclass(frozen=True)
class Archive:
    filename: str
    urls: tuple[str, ...]
    md5: str


# HTTPS first: thor.robots.ox.ac.uk is Oxford's HTTPS host for VOC (torchvision's URL);
# host.robots.ox.ac.uk has only been known to serve plain HTTP, so it stays last, for
# when thor is down -- the pinned MD5 checks whatever it sends.
VOC2012 = Archive(
    "VOCtrainval_11-May-2012.tar",
    ("https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
     "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
    "6cd6e144f989b92b3379bac3b3de84fd",
)
SBD = Archive(
    "benchmark.tgz",
    ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
     "https://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"),
    "82b4d87ceb2ed10f6038a1cba92111cb",
)
EXPECTED_COUNTS = {"train_aug": 10582, "val": 1449, "train": 1464}
EXTRA_SIZES = (200, 400, 900, 1464)
EXTRA_SEEDS = (0, 1, 2)
# http.client.HTTPException: IncompleteRead and friends when a connection breaks mid-body.
NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError,
                  http.client.HTTPException)
# tarfile's "data" filter (Python >= 3.10.12, 3.11.4, 3.12): see safe_extract.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_FILTER_ERRORS = (tarfile.FilterError,) if HAS_DATA_FILTER else ()


class ChecksumError(RuntimeError):
    """A downloaded file does not have the expected MD5."""


class OfflineError(RuntimeError):
    """None of an archive's URLs could be reached."""


class IncompleteDownloadError(ConnectionError):
    """The connection ended before the whole file arrived; the ``.part`` file is kept to resume."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_range(headers) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a ``Content-Range: bytes first-last/total`` (or
    ``bytes */total``) header; ``None`` for what it does not say."""
    value = headers.get("Content-Range") if headers is not None else None
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", value.strip()) if value else None
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


def _open_from(url: str, start: int, opener: Callable, timeout: float):
    """Open ``url`` at byte ``start``; returns ``(stream, offset, total)``.

    ``offset`` is the byte the stream starts at: ``start`` when the server resumed (206), 0
    when it sends the whole file (200, a server that ignores Range). ``total`` is the file's
    size or ``None`` if unknown. ``stream`` is ``None`` when the server has nothing past
    ``start`` (416); then ``total`` is the size it reports, if any.
    """
    if url.startswith("file://"):
        # urllib's file handler ignores Range, so seek ourselves (also what the tests use).
        path = Path(urllib.request.url2pathname(url[len("file://"):]))
        size = path.stat().st_size
        offset = start if start <= size else 0
        stream = open(path, "rb")
        stream.seek(offset)
        return stream, offset, size
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        stream = opener(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # range not satisfiable: the .part file may be whole
            return None, start, _content_range(error.headers)[1]
        raise
    status = getattr(stream, "status", None) or stream.getcode()
    length = stream.headers.get("Content-Length")
    if start and status == 206:
        first, total = _content_range(stream.headers)
        if first is not None and first != start:    # not the bytes we asked for: start over
            stream.close()
            return _open_from(url, 0, opener, timeout)
        if total is None and length is not None:
            total = start + int(length)
        return stream, start, total
    return stream, 0, int(length) if length is not None else None


def _download_once(url: str, partial: Path, md5: str | None, opener: Callable, timeout: float,
                   chunk: int, progress: bool) -> None:
    """One connection: append to (or restart) ``partial`` until the server stops sending.

    Raises :class:`IncompleteDownloadError` if fewer bytes than the announced size arrived
    (``read`` returns ``b""`` when a connection drops mid-body), keeping ``partial`` to resume.
    """
    start = partial.stat().st_size if partial.is_file() else 0
    stream, offset, total = _open_from(url, start, opener, timeout)
    if stream is None:
        if total == start or (md5 is not None and md5sum(partial) == md5):
            return                                    # the .part file is already whole
        # The server cannot confirm that the .part file is whole: fetch it all again.
        stream, offset, total = _open_from(url, 0, opener, timeout)
    with stream, open(partial, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True,
            desc=partial.name, disable=not progress) as bar:
        for block in iter(lambda: stream.read(chunk), b""):
            out.write(block)
            bar.update(len(block))
    size = partial.stat().st_size
    if total is not None and size != total:
        if size > total:                              # more than the file holds: useless to resume
            partial.unlink()
        raise IncompleteDownloadError(f"{url}: got {size} of {total} bytes before the connection ended")


def download(url: str, destination: Path, md5: str | None = None, *,
             opener: Callable = urllib.request.urlopen, timeout: float = 60.0,
             chunk: int = 1 << 20, progress: bool = True, attempts: int = 3) -> Path:
    """Download ``url`` to ``destination``, resuming ``destination.part``; verify ``md5``.

    A complete file with the right checksum is not downloaded again. A connection that drops
    mid-file is resumed with an HTTP Range request, up to ``attempts`` connections in all while
    each brings new bytes (rerunning resumes too); a server that ignores the range request
    sends the whole file again. The file is moved to ``destination`` only when its size
    matches the server's ``Content-Length``/``Content-Range``, so even with ``md5=None`` a
    partial file is never returned as whole (a server that announces no size can only be
    trusted). A checksum mismatch deletes the file and raises :class:`ChecksumError`.
    """
    destination = Path(destination)
    if destination.is_file() and (md5 is None or md5sum(destination) == md5):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(1, attempts + 1):
        before = partial.stat().st_size if partial.is_file() else 0
        try:
            _download_once(url, partial, md5, opener, timeout, chunk, progress)
            break
        except NETWORK_ERRORS as error:
            grew = partial.is_file() and partial.stat().st_size > before
            if attempt == attempts or not grew:
                raise
            print(f"{destination.name}: {error}; resuming ({attempt}/{attempts - 1})", file=sys.stderr)
    partial.replace(destination)
    if md5 is not None:
        actual = md5sum(destination)
        if actual != md5:
            destination.unlink()
            raise ChecksumError(f"{destination}: MD5 is {actual}, expected {md5}; the file was deleted, "
                                f"rerun to download it again")
    return destination


def fetch(archive: Archive, download_dir: Path, *, opener: Callable = urllib.request.urlopen,
          progress: bool = True) -> Path:
    """Download ``archive`` into ``download_dir`` from the first URL that answers."""
    reasons = []
    for url in archive.urls:
        try:
            return download(url, download_dir / archive.filename, archive.md5, opener=opener, progress=progress)
        except NETWORK_ERRORS as error:
            reasons.append(f"{url}: {getattr(error, 'reason', error)}")
    raise OfflineError(
        f"could not download {archive.filename} -- are you offline?\n  " + "\n  ".join(reasons)
        + f"\nDownload it by hand from {archive.urls[0]} into {download_dir}/ (a partial file "
          f"{archive.filename}.part is resumed) and rerun; the MD5 {archive.md5} is checked.")


def extraction_marker(destination: Path, archive_name: str) -> Path:
    """The file that says ``archive_name`` was extracted completely into ``destination``."""
    return Path(destination) / f".{archive_name}.extracted"


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _unsafe_member(member: tarfile.TarInfo, root: str) -> str | None:
    """Why ``member`` must not be extracted into the real path ``root``, or ``None``.

    Paths are resolved with :func:`os.path.realpath` *as extraction proceeds*, so a member
    written through a symlink extracted (or planted) earlier is caught too.
    """
    name, link = member.name, member.linkname
    if os.path.isabs(name) or name.startswith(("/", "\\")):
        return "has an absolute path"
    if not _inside(os.path.realpath(os.path.join(root, name)), root):
        return "would be written outside the target folder"
    if member.issym() and (os.path.isabs(link) or not _inside(
            os.path.realpath(os.path.join(root, os.path.dirname(name), link)), root)):
        return f"is a symbolic link to {link!r}, outside the target folder"
    if member.islnk() and (os.path.isabs(link) or not _inside(os.path.realpath(os.path.join(root, link)), root)):
        return f"is a hard link to {link!r}, outside the target folder"
    if member.isdev():
        return "is a device file or FIFO"
    if not member.isdir() and member.mode & (stat.S_ISUID | stat.S_ISGID):
        return f"has a setuid/setgid mode {oct(member.mode)}"
    return None


def safe_extract(archive_path: Path, destination: Path, *, data_filter: bool | None = None) -> None:
    """Extract a tar archive (any compression) into ``destination``, refusing unsafe members.

    Every member is checked first (:func:`_unsafe_member`); with ``data_filter`` (default:
    when this Python has it) tarfile's ``filter="data"`` then also drops high mode bits and
    ownership. Without it, members are extracted without their stored modes or owners.
    Raises :class:`DataFileError` on the first unsafe member.
    """
    archive_path, destination = Path(archive_path), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(destination)
    use_filter = HAS_DATA_FILTER if data_filter is None else data_filter

    def refuse(problem: str) -> DataFileError:
        return DataFileError(archive_path, f"refused to extract it: {problem}. "
                                           "This is not the official archive; delete it and rerun")

    def checked(member: tarfile.TarInfo, path: str = root) -> tarfile.TarInfo:
        problem = _unsafe_member(member, root)
        if problem:
            raise refuse(f"member {member.name!r} {problem}")
        return tarfile.data_filter(member, path) if use_filter else member

    try:
        with tarfile.open(archive_path) as tar:
            if use_filter:
                tar.extractall(root, filter=checked)
            else:
                for member in tar:
                    tar.extract(checked(member), root, set_attrs=False,
                                **({"filter": "fully_trusted"} if HAS_DATA_FILTER else {}))
    except tarfile.ReadError as error:
        raise DataFileError(archive_path, f"not a readable tar archive ({error}); delete it and rerun") from error
    except _FILTER_ERRORS as error:           # what the data filter refuses beyond our checks
        raise refuse(str(error)) from error


def extract(archive_path: Path, destination: Path, expected: Path) -> None:
    """Extract ``archive_path`` into ``destination`` and write its completion marker.

    A partial tree left by an interrupted run (no marker) is extracted over: every member is
    written again. ``expected`` is a path the archive must have created.
    """
    print(f"extracting {archive_path.name} ...")
    safe_extract(archive_path, destination)
    if not expected.exists():
        raise DataFileError(archive_path, f"extraction did not create {expected}")
    marker = extraction_marker(destination, archive_path.name)
    temporary = marker.with_name(marker.name + ".tmp")
    temporary.write_text(f"{archive_path.name} extracted completely\n")
    os.replace(temporary, marker)


def build_lists(voc_root: Path, sbd_root: Path) -> dict[str, list[str]]:
    """``train_aug`` = (SBD train + SBD val + VOC train) - VOC val, and VOC ``train``/``val``."""
    seg = voc_root / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_id_list(seg / "train.txt"), read_id_list(seg / "val.txt")
    sbd = read_id_list(sbd_root / "train.txt") + read_id_list(sbd_root / "val.txt")
    held_out = set(voc_val)
    train_aug = sorted((set(sbd) | set(voc_train)) - held_out)
    return {"train_aug": train_aug, "val": voc_val, "train": voc_train}


def check_counts(lists: dict[str, list[str]], expected: dict[str, int] = EXPECTED_COUNTS) -> None:
    wrong = {k: (len(lists[k]), n) for k, n in expected.items() if len(lists[k]) != n}
    if wrong:
        details = ", ".join(f"{k}: {got} ids, expected {n}" for k, (got, n) in wrong.items())
        raise SystemExit(f"unexpected list sizes ({details}); is the download complete?")


_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"     # the empty IEND chunk every PNG ends with


def whole_png(path: Path) -> bool:
    """Whether ``path`` is a PNG written to its end (a writer killed halfway leaves no IEND);
    reads 20 bytes, so a rerun can check every mask cheaply."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != _PNG_START:
                return False
            handle.seek(-len(_PNG_END), os.SEEK_END)
            return handle.read() == _PNG_END
    except OSError:
        return False


def build_aug_masks(voc_root: Path, sbd_root: Path, ids: Sequence[str], progress: bool = True) -> int:
    """Write ``SegmentationClassAug/<id>.png``, each atomically; returns how many were written
    (whole ones are kept, truncated ones written again)."""
    out_dir = voc_root / "SegmentationClassAug"
    written = 0
    for sample_id in tqdm(ids, desc="SegmentationClassAug", disable=not progress):
        target = out_dir / f"{sample_id}.png"
        if whole_png(target):
            continue
        own = voc_root / "SegmentationClass" / f"{sample_id}.png"
        if own.is_file():
            write_atomically(target, lambda temporary: shutil.copyfile(own, temporary))
        else:
            write_mask_png(target, read_mask(sbd_root / "cls" / f"{sample_id}.mat"))
        written += 1
    return written


def write_extra_subsets(voc_root: Path, pool: Sequence[str], sizes: Sequence[int] = EXTRA_SIZES,
                        seeds: Sequence[int] = EXTRA_SEEDS) -> dict[tuple[int, int], list[str]]:
    """Write ``extra_<n>_seed<s>.txt`` id lists: nested random subsets of ``pool``."""
    subsets = {}
    ordered = sorted(pool)
    for seed in seeds:
        for n in sizes:
            chosen = [ordered[i] for i in pick_subset(len(ordered), min(n, len(ordered)), seed, "extra")]
            write_id_list(voc_root / "ImageSets" / "Segmentation" / f"extra_{n}_seed{seed}.txt", chosen)
            subsets[(n, seed)] = chosen
    return subsets


def count_class(voc_root: Path, ids: Sequence[str], name: str) -> int:
    """How many of ``ids`` have an object of class ``name`` in their annotation XML."""
    c = VOC_CLASSES.index(name)
    return sum(int(c in parse_annotation_xml(voc_root / "Annotations" / f"{i}.xml", VOC_CLASSES)[1]) for i in ids)


def prepare(root: Path, *, download_dir: Path | None = None, skip_download: bool = False,
            seeds: Sequence[int] = EXTRA_SEEDS, expected: dict[str, int] | None = EXPECTED_COUNTS,
            opener: Callable = urllib.request.urlopen, progress: bool = True) -> dict[str, list[str]]:
    """Run all steps; returns the lists. ``skip_download`` expects the trees already extracted."""
    root = Path(root)
    download_dir = download_dir or root / "downloads"
    voc_root = root / "VOCdevkit" / "VOC2012"
    sbd_root = root / "benchmark_RELEASE" / "dataset"
    archives = ((VOC2012, voc_root / "ImageSets" / "Segmentation" / "val.txt"), (SBD, sbd_root / "train.txt"))
    if not skip_download:
        # Only the marker says "extracted": folders appear with the first members.
        for archive, needed in archives:
            if not extraction_marker(root, archive.filename).is_file():
                extract(fetch(archive, download_dir, opener=opener, progress=progress), root, needed)
    for archive, needed in archives:
        marker = extraction_marker(root, archive.filename)
        if not needed.is_file():
            raise DataFileError(needed, f"missing although {marker.name} says {archive.filename} was extracted; "
                                        "delete that marker and rerun to extract it again" if marker.is_file()
                                else "missing; download the archives first (run without --skip-download)")
    lists = build_lists(voc_root, sbd_root)
    if expected:
        check_counts(lists, expected)
    seg = voc_root / "ImageSets" / "Segmentation"
    write_id_list(seg / "train_aug.txt", lists["train_aug"])
    written = build_aug_masks(voc_root, sbd_root, lists["train_aug"] + lists["val"], progress)
    subsets = write_extra_subsets(voc_root, lists["train"], seeds=seeds)
    print(f"train_aug: {len(lists['train_aug'])} ids, val: {len(lists['val'])} ids, "
          f"{written} masks written to {voc_root / 'SegmentationClassAug'}")
    for (n, seed), ids in sorted(subsets.items()):
        print(f"extra_{n}_seed{seed}.txt: {len(ids)} ids, {count_class(voc_root, ids, 'boat')} with a boat")
    return lists


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data/voc"), help="where to put VOCdevkit/ and SBD")
    parser.add_argument("--download-dir", type=Path, default=None, help="archives (default: ROOT/downloads)")
    parser.add_argument("--skip-download", action="store_true", help="the trees are already extracted")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EXTRA_SEEDS), help="extra-subset seeds")
    parser.add_argument("--no-count-check", action="store_true", help="accept list sizes other than the paper's")
    args = parser.parse_args(argv)
    try:
        prepare(args.root, download_dir=args.download_dir, skip_download=args.skip_download,
                seeds=args.seeds, expected=None if args.no_count_check else EXPECTED_COUNTS)
    except (OfflineError, ChecksumError, DataFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
