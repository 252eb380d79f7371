"""Readers for the GCompris package: the ``.deb``, the Qt ``.rcc`` bundles in it, and its licence notes.

A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files; reading it here (rather
than with ``dpkg-deb``) lets the asset builder run on any OS. Inside, GCompris keeps its images and
sounds in Qt binary resource bundles (``rcc -binary``). The ``.rcc`` format (Qt's ``rcc.cpp`` writes it,
``qresource.cpp`` reads it) is, all integers big-endian:

* header: ``b"qres"``, version (u32), tree offset, data offset, names offset (u32 each) and, from
  version 3 on, overall flags (u32);
* tree: fixed-size nodes, node 0 is the root directory. A node is name offset (u32), flags (u16),
  then either child count (u32) + index of the first child (u32) for a directory, or territory
  (u16) + language (u16) + data offset (u32) for a file; version >= 2 appends the modification
  time (u64), so a node is 14 or 22 bytes;
* names: u16 length in UTF-16 units, u32 hash, the name in UTF-16BE;
* data: u32 size, then the bytes. Flag 0x01 means zlib as ``qCompress`` writes it (a u32
  uncompressed length, then a zlib stream); flag 0x04 (Qt >= 5.13) means a raw zstd frame.
"""

from __future__ import annotations

import fnmatch
import io
import re
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from auditor_lite.data.schema import DataError

MAGIC = b"qres"
FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04
_HEADER_V1 = struct.Struct(">4sIIII")


@dataclass(frozen=True)
class RccEntry:
    """One file inside a bundle: its path (``/``-separated, no leading slash) and where its bytes are."""

    path: str
    flags: int
    data_offset: int  # relative to the bundle's data section

    @property
    def compression(self) -> str:
        if self.flags & FLAG_ZSTD:
            return "zstd"
        if self.flags & FLAG_ZLIB:
            return "zlib"
        return "none"


class RccBundle:
    """Read-only view of one ``.rcc`` file held in memory (GCompris' largest is under 5 MB)."""

    def __init__(self, source: str | Path | bytes, name: str | None = None):
        if isinstance(source, (bytes, bytearray)):
            self.path = name or "<rcc bytes>"
            self._blob = bytes(source)
        else:
            self.path = str(source)
            try:
                self._blob = Path(source).read_bytes()
            except OSError as exc:
                raise DataError(source, f"cannot read resource bundle: {exc.strerror or exc}") from exc
        self._parse_header()
        self._entries = self._walk_tree()

    # -- public API ---------------------------------------------------------------------------
    def entries(self) -> list[RccEntry]:
        """Every file in the bundle, depth-first in the bundle's own order."""
        return list(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, path: str) -> bool:
        return path.lstrip("/") in self._entries

    def read(self, path: str) -> bytes:
        """The (decompressed) bytes of one file; ``DataError`` if it is absent or corrupt."""
        entry = self._entries.get(path.lstrip("/"))
        if entry is None:
            raise DataError(self.path, f"no file {path!r} in the bundle")
        return self._read_entry(entry)

    def extract_all(self, out_dir: str | Path) -> list[Path]:
        """Write every file under ``out_dir`` keeping its directories; returns the written paths."""
        out_dir = Path(out_dir).resolve()
        written = []
        for entry in self._entries.values():
            target = (out_dir / entry.path).resolve()
            if out_dir not in target.parents:  # a node named '..' must not escape
                raise self._fail(f"entry {entry.path!r} would be written outside {out_dir}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._read_entry(entry))
            written.append(target)
        return written

    # -- parsing ------------------------------------------------------------------------------
    def _fail(self, message: str) -> DataError:
        return DataError(self.path, message)

    def _u16(self, offset: int) -> int:
        return self._unpack(">H", offset)[0]

    def _u32(self, offset: int) -> int:
        return self._unpack(">I", offset)[0]

    def _unpack(self, fmt: str, offset: int) -> tuple:
        try:
            return struct.unpack_from(fmt, self._blob, offset)
        except struct.error:
            raise self._fail(f"truncated bundle: need {struct.calcsize(fmt)} bytes at offset "
                             f"{offset}, file has {len(self._blob)}") from None

    def _parse_header(self) -> None:
        if len(self._blob) < _HEADER_V1.size or self._blob[:4] != MAGIC:
            raise self._fail("not a Qt resource bundle (missing 'qres' magic)")
        _, self.version, self.tree_offset, self.data_offset, self.names_offset = \
            _HEADER_V1.unpack_from(self._blob, 0)
        if self.version not in (1, 2, 3):
            raise self._fail(f"unsupported rcc format version {self.version} (know 1-3)")
        self.overall_flags = self._u32(_HEADER_V1.size) if self.version >= 3 else 0
        self.node_size = 22 if self.version >= 2 else 14
        for label, offset in (("tree", self.tree_offset), ("data", self.data_offset),
                              ("names", self.names_offset)):
            if offset >= len(self._blob):
                raise self._fail(f"{label} offset {offset} is past the end ({len(self._blob)} bytes)")

    def _name(self, name_offset: int) -> str:
        at = self.names_offset + name_offset
        length = self._u16(at)
        raw = self._blob[at + 6: at + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise self._fail(f"truncated name at names offset {name_offset}")
        return raw.decode("utf-16-be")

    def _walk_tree(self) -> dict[str, RccEntry]:
        entries: dict[str, RccEntry] = {}
        node_count = (len(self._blob) - self.tree_offset) // self.node_size
        visited: set[int] = set()
        # (node index, path of its parent); the root (node 0) has no name of its own.
        stack = [(0, "")]
        while stack:
            index, parent = stack.pop()
            if index in visited or index >= node_count:
                raise self._fail(f"corrupt tree: node {index} is out of range or loops")
            visited.add(index)
            at = self.tree_offset + index * self.node_size
            name_offset, flags = self._unpack(">IH", at)
            name = "" if index == 0 else self._name(name_offset)
            path = f"{parent}/{name}" if parent else name
            if flags & FLAG_DIRECTORY:
                child_count, first_child = self._unpack(">II", at + 6)
                # Push in reverse so that children come out in bundle order.
                stack.extend((first_child + k, path) for k in reversed(range(child_count)))
            else:
                data_offset = self._u32(at + 10)
                entries[path] = RccEntry(path=path, flags=flags, data_offset=data_offset)
        return entries

    def _read_entry(self, entry: RccEntry) -> bytes:
        at = self.data_offset + entry.data_offset
        size = self._u32(at)
        payload = self._blob[at + 4: at + 4 + size]
        if len(payload) != size:
            raise self._fail(f"{entry.path}: data runs past the end of the bundle")
        if entry.flags & FLAG_ZSTD:
            return self._unzstd(entry, payload)
        if entry.flags & FLAG_ZLIB:
            if size < 4:
                raise self._fail(f"{entry.path}: compressed entry shorter than its length prefix")
            expected = struct.unpack_from(">I", payload)[0]
            try:
                data = zlib.decompress(payload[4:])
            except zlib.error as exc:
                raise self._fail(f"{entry.path}: corrupt zlib data ({exc})") from None
            if len(data) != expected:
                raise self._fail(f"{entry.path}: inflated to {len(data)} bytes, header says {expected}")
            return data
        return payload

    def _unzstd(self, entry: RccEntry, payload: bytes) -> bytes:
        try:
            import zstandard
        except ImportError:
            raise self._fail(f"{entry.path} is zstd-compressed; install the 'zstandard' "
                             "package to read it") from None
        try:
            return zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)
        except zstandard.ZstdError as exc:
            raise self._fail(f"{entry.path}: corrupt zstd data ({exc})") from None


def qt_hash(name: str) -> int:
    """Qt's ``qt_hash`` of a name as rcc stores it (used to sort siblings; writers need it)."""
    h = 0
    for unit in struct.unpack(f">{len(name.encode('utf-16-be')) // 2}H", name.encode("utf-16-be")):
        h = ((h << 4) + unit) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


# -- Debian packages ------------------------------------------------------------------------------
_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = struct.Struct("16s12s6s6s8s10s2s")


def read_deb_members(deb: str | Path) -> dict[str, bytes]:
    """The members of a ``.deb`` (``debian-binary``, ``control.tar.*``, ``data.tar.*``) by name."""
    try:
        blob = Path(deb).read_bytes()
    except OSError as exc:
        raise DataError(deb, f"cannot read package: {exc.strerror or exc}") from exc
    if not blob.startswith(_AR_MAGIC):
        raise DataError(deb, "not a Debian package (missing ar magic '!<arch>')")
    members: dict[str, bytes] = {}
    at = len(_AR_MAGIC)
    while at + _AR_HEADER.size <= len(blob):
        name, _, _, _, _, size_field, fmag = _AR_HEADER.unpack_from(blob, at)
        if fmag != b"`\n":
            raise DataError(deb, f"corrupt ar header at offset {at}")
        size = int(size_field.strip() or b"0")
        start = at + _AR_HEADER.size
        if start + size > len(blob):
            raise DataError(deb, f"member {name.strip()!r} runs past the end of the package")
        members[name.decode("ascii", "replace").strip().rstrip("/")] = blob[start:start + size]
        at = start + size + (size & 1)  # members are padded to an even length
    return members


def _open_tar(deb: str | Path, members: dict[str, bytes], prefix: str) -> tarfile.TarFile:
    name = next((n for n in members if n.startswith(prefix)), None)
    if name is None:
        raise DataError(deb, f"package has no {prefix}* member (has {', '.join(members)})")
    payload = members[name]
    if name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise DataError(deb, f"{name} is zstd-compressed; install the 'zstandard' package "
                                 "to read it") from None
        payload = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    try:
        return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
    except tarfile.TarError as exc:
        raise DataError(deb, f"cannot open {name}: {exc}") from None


def deb_version(deb: str | Path, members: dict[str, bytes] | None = None) -> str:
    """The ``Version:`` field of the package's control file."""
    members = members if members is not None else read_deb_members(deb)
    with _open_tar(deb, members, "control.tar") as tar:
        for info in tar.getmembers():
            if info.name.removeprefix("./") == "control":
                text = tar.extractfile(info).read().decode("utf-8", "replace")
                for line in text.splitlines():
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
    raise DataError(deb, "control file has no Version field")


def iter_deb_files(deb: str | Path, wanted: tuple[str, ...] = ("",),
                   members: dict[str, bytes] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, bytes)`` of the package's regular files whose path starts with ``wanted``.

    Paths are relative (``usr/share/...``), as ``dpkg-deb -x`` would lay them out.
    """
    members = members if members is not None else read_deb_members(deb)
    with _open_tar(deb, members, "data.tar") as tar:
        for info in tar:
            rel = info.name.removeprefix("./")
            if info.isfile() and rel.startswith(wanted):
                yield rel, tar.extractfile(info).read()


def extract_deb(deb: str | Path, dest: str | Path, wanted: tuple[str, ...] = ("",)) -> list[Path]:
    """Unpack the package's files under ``wanted`` into ``dest``; member names are not trusted."""
    dest = Path(dest).resolve()
    written = []
    for rel, data in iter_deb_files(deb, wanted):
        target = (dest / rel).resolve()
        if dest not in target.parents:
            raise DataError(deb, f"member {rel!r} would be written outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


# -- copyright notes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LicenceNote:
    licence: str      # SPDX-like name, e.g. "CC-BY-SA-4.0", "GPL-3+", "public-domain"
    copyright: str
    source: str       # upstream URL where the note gives one
    basis: str        # where the note was found, e.g. "debian/copyright"


class CopyrightNotes:
    """Per-file licences from Debian's machine-readable ``copyright`` file (DEP-5) and from the
    README notes GCompris keeps beside its resources inside the bundles.

    A bundle README names the shipped files (``cat.webp``) and is newer than Debian's file, which
    still names some originals (``cat1.jpg``); so a README entry wins, then the last matching
    DEP-5 paragraph (the DEP-5 rule), whose ``Files: *`` catch-all is the package's default.
    """

    def __init__(self, dep5_text: str = ""):
        self._dep5 = [p for p in _paragraphs(dep5_text) if "files" in p]
        self._readmes: list[tuple[str, list[dict[str, str]]]] = []

    def add_readme(self, readme_path: str, text: str) -> None:
        folder = readme_path.rsplit("/", 1)[0] + "/"
        self._readmes.append((folder, [p for p in _paragraphs(text, readme=True) if "files" in p]))

    def lookup(self, path: str) -> LicenceNote:
        """The note for a bundle path such as ``gcompris/src/activities/x/resource/y.webp``."""
        readme = self._readme_note(path)
        debian = self._dep5_note(path)
        if readme is None:
            return debian
        # A README's bare "GPL" is refined by Debian's researched "GPL-3+" for the same file.
        if (debian.licence.startswith(readme.licence) and debian.licence != readme.licence
                and not debian.basis.endswith("(Files: *)")):
            return LicenceNote(debian.licence, readme.copyright, readme.source,
                               f"{readme.basis}, refined by debian/copyright")
        return readme

    def _readme_note(self, path: str) -> LicenceNote | None:
        for folder, paragraphs in self._readmes:
            if path.startswith(folder):
                rel = path[len(folder):]
                for para in paragraphs:
                    patterns = para["files"].split()
                    if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], p)
                           for p in patterns):
                        return _note(para, f"{folder}README")
        return None

    def _dep5_note(self, path: str) -> LicenceNote:
        source_path = path.split("/", 1)[1] if path.startswith("gcompris/") else path
        match = None
        for para in self._dep5:  # the last matching paragraph wins
            if any(_dep5_matches(source_path, pattern) for pattern in para["files"].split()):
                match = para
        if match is None:
            return LicenceNote("unknown", "", "", "no note found")
        return _note(match, "debian/copyright" + (" (Files: *)" if match["files"].strip() == "*" else ""))


_FIELD = re.compile(r"^([A-Za-z][A-Za-z-]*):(.*)$")
_BARE_FILE = re.compile(r"^[\w./*-]+\.\w{2,4}$")
_FIELD_ALIASES = {"license": "licence", "comments": "comment"}


def _paragraphs(text: str, readme: bool = False) -> list[dict[str, str]]:
    """Split ``Key: value`` paragraphs (blank-line separated). A line that is not ``Key:`` extends
    the previous field: DEP-5 indents those, GCompris' READMEs list one file a line after ``Files:``.
    In a README a bare file name always counts as a file (some paragraphs forget ``Files:``)."""
    result, current, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                result.append(current)
            current, key = {}, None
            continue
        field = _FIELD.match(line)
        if field:
            key = _FIELD_ALIASES.get(field.group(1).lower(), field.group(1).lower())
            current[key] = field.group(2).strip()
        elif readme and _BARE_FILE.match(line.strip()):
            current["files"] = (current.get("files", "") + " " + line.strip()).strip()
        elif key is not None:
            current[key] = (current[key] + "\n" + line.strip()).strip()
    return result


def _dep5_matches(path: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(path, pattern):
        return True
    # GCompris converted its JPEG/PNG pictures to WebP after Debian's notes were written.
    stem, _, ext = pattern.rpartition(".")
    return (path.endswith(".webp") and ext.lower() in ("jpg", "jpeg", "png")
            and "*" not in stem.rsplit("/", 1)[-1] and fnmatch.fnmatchcase(path[:-5], stem))


def _note(para: dict[str, str], basis: str) -> LicenceNote:
    licence = para.get("licence", "unknown").splitlines()[0].strip()
    licence = {"public domain": "public-domain"}.get(licence.lower(), licence)
    licence = re.sub(r"^GPLv(\d)", r"GPL-\1", licence)          # GPLv3 -> GPL-3
    licence = re.sub(r"^(CC[-\w]*) (\d)", r"\1-\2", licence)    # CC-BY-SA 4.0 -> CC-BY-SA-4.0
    source = para.get("source") or next(
        (w for w in para.get("comment", "").split() if w.startswith("http")), "")
    copyright_ = " ".join(para.get("copyright", "").split())
    return LicenceNote(licence, copyright_, source, basis)
