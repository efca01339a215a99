"""The formal checks of a declaration (issue 15 item 10): time and peak memory per FI.

``python bench/formal_checks.py [--mib 256] [--xsd-mib 32] [--dir DIR]`` writes, under DIR (a
temporary folder by default), a billion-laughs FI and a generated well-formed DmfA-like FI of
``--mib`` MiB, then times :func:`gateway.pipeline.checks.check_declarations`, exactly as the
pipeline calls it (the file read once in 1 MiB chunks), on each. Each case runs in a fresh
interpreter, so its peak RSS is its own. Peers measured in the same run on the same file: a
plain read with SHA-256 (the I/O floor) and stdlib expat with no handler (the parser's own
ceiling); the ratio says what the checks add. ``--xsd-mib`` sizes a second generated FI checked
against an XSD too (libxml2's streaming validation is much slower than expat; 0 skips it).

Then the nesting-depth bound (CAP in gateway/core/declaration.py): each way of bounding it
measured on three FIs, ``--options-mib`` MiB of the DmfA-like one, as many MiB of an
element-dense one (``<Row><N>7</N></Row>``, two elements per 19 bytes) and ``--depth`` nested
elements (3 bytes each): MiB/s of CPU time (``time.process_time``: the machine is shared) and
peak RSS, each in a fresh interpreter. The options: bare expat (no bound: the floor); (a) expat
with Python Start/EndElementHandlers counting depth (closures); (a') the slot list the check uses
(a Python start handler that pops, ``list.append`` as the end handler); (b) lxml beside expat
with a target that has no callback (libxml2 2.14 enforces no depth there: the deep FI passes and
its memory grows); (b') lxml's pull parser beside expat, building a tree (libxml2 caps its depth
at 256) pruned every 64 KiB; and the formal checks themselves (DeclarationCheck, no XSD).

Figures are printed, never asserted (DESIGN.md "Testing").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from xml.parsers import expat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NS = "urn:bench:dmfa"
XSD = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{NS}"
  xmlns="{NS}" elementFormDefault="qualified">
  <xs:element name="DmfAOriginal"><xs:complexType><xs:sequence>
    <xs:element name="NaturalPerson" maxOccurs="unbounded"><xs:complexType><xs:sequence>
      <xs:element name="INSS" type="xs:string"/>
      <xs:element name="Name" type="xs:string"/>
      <xs:element name="Remuneration" type="xs:decimal" maxOccurs="unbounded"/>
    </xs:sequence><xs:attribute name="seq" type="xs:int"/></xs:complexType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>
"""
LAUGHS = "\n".join(f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
BILLION_LAUGHS = (
    f'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol0 "lol">\n{LAUGHS}\n]>\n'
    "<lolz>&lol9;</lolz>\n"
).encode()


def person(seq: int) -> bytes:
    return (
        f'  <NaturalPerson seq="{seq}">\r\n    <INSS>{85073000000 + seq:011d}</INSS>\r\n'
        f"    <Name>Person {seq} &amp; family, caf\u00e9</Name>\r\n"
        "    <Remuneration>3120.55</Remuneration><Remuneration>412.10</Remuneration>\r\n"
        "  </NaturalPerson>\r\n"
    ).encode()


def write_dmfa(path: Path, mib: int) -> None:
    """A well-formed UTF-8 DmfA-like FI of about ``mib`` MiB, written in blocks."""
    head = f'<?xml version="1.0" encoding="UTF-8"?>\r\n<DmfAOriginal xmlns="{NS}">\r\n'
    block = b"".join(person(i) for i in range(4096))
    with path.open("wb") as fh:
        fh.write(head.encode())
        for _ in range(max(1, mib * 1024 * 1024 // len(block))):
            fh.write(block)
        fh.write(b"</DmfAOriginal>\r\n")


def write_dense(path: Path, mib: int) -> None:
    """An element-dense well-formed FI of about ``mib`` MiB: two elements every 19 bytes."""
    block = b"<Row><N>7</N></Row>" * 4096
    with path.open("wb") as fh:
        fh.write(f'<?xml version="1.0" encoding="UTF-8"?><DmfAOriginal xmlns="{NS}">'.encode())
        for _ in range(max(1, mib * 1024 * 1024 // len(block))):
            fh.write(block)
        fh.write(b"</DmfAOriginal>\r\n")


def write_deep(path: Path, depth: int) -> None:
    """A well-formed FI of ``depth`` nested elements under the root."""
    with path.open("wb") as fh:
        fh.write(f'<?xml version="1.0" encoding="UTF-8"?><DmfAOriginal xmlns="{NS}">'.encode())
        fh.write(b"<a>" * depth)
        fh.write(b"</a>" * depth)
        fh.write(b"</DmfAOriginal>\r\n")


CAP = 256
"""The depth the options (a) and (a') refuse past: MAX_DEPTH, spelt out so that this bench also
measures a checkout from before the bound (where "declaration" runs with none)."""

OPTIONS = {
    "bare": "bare expat, no bound (floor)",
    "handlers": "(a) expat + Python start/end handlers",
    "slots": "(a') expat + pop/list.append slots",
    "lxml-target": "(b) expat + lxml, target without callbacks",
    "lxml-tree": "(b') expat + lxml pull tree, pruned",
    "declaration": "formal checks (DeclarationCheck)",
}
"""The nesting-depth options: case name -> label."""


def chunks_of(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def run_option(kind: str, path: Path) -> object:
    """One depth option over the file, read in 1 MiB chunks: None, or why it stopped."""
    from lxml import etree

    from gateway.core.declaration import DeclarationCheck, DeclarationRules

    if kind == "declaration":
        check = DeclarationCheck(DeclarationRules(), name=path.name)
        for chunk in chunks_of(path):
            if (found := check.feed(chunk)) is not None:
                return str(found)
        found = check.close()
        return None if found is None else str(found)
    parser = expat.ParserCreate(namespace_separator=" ")
    if kind == "handlers":
        depth = 0

        def start(name: str, attributes: object) -> None:
            nonlocal depth
            depth += 1
            if depth > CAP:
                raise IndexError(f"elements nested deeper than {CAP}")

        def end(name: str) -> None:
            nonlocal depth
            depth -= 1

        parser.StartElementHandler, parser.EndElementHandler = start, end
    elif kind == "slots":
        room: list[object] = [None] * CAP
        take = room.pop

        def opened(name: str, attributes: object) -> None:
            take()

        parser.StartElementHandler, parser.EndElementHandler = opened, room.append
    side: Callable[[bytes], None] | None = None
    tree: list[etree._Element] = []
    if kind == "lxml-target":

        class Closing:
            def close(self) -> None:
                return None

        # lxml calls only the target methods that exist: close() alone, no SAX callback.
        parser_b = etree.XMLParser(  # type: ignore[call-overload]
            target=Closing(), resolve_entities=False, no_network=True, load_dtd=False
        )
        side = parser_b.feed
    elif kind == "lxml-tree":
        pull = etree.XMLPullParser(
            events=("start",),
            tag=f"{{{NS}}}DmfAOriginal",
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
        )

        def side(piece: bytes) -> None:
            pull.feed(piece)
            tree.extend(element for _, element in pull.read_events())
            node = tree[0] if tree else None
            while node is not None and len(node):
                del node[:-1]
                node = node[-1]

    try:
        for chunk in chunks_of(path):
            for at in range(0, len(chunk), 1 << 16):
                piece = chunk[at : at + (1 << 16)]
                parser.Parse(piece, False)
                if side is not None:
                    side(piece)
        parser.Parse(b"", True)
    except (IndexError, etree.XMLSyntaxError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_case(kind: str, path: Path, xsd: Path | None) -> dict[str, object]:
    """One measurement in this interpreter (called in a child process)."""
    # What the case imports, imported before the clock and the RSS base; the depth options need
    # only the core (so that they run on a checkout whose pipeline is in the middle of a change).
    import lxml.etree  # noqa: F401

    import gateway.core.declaration

    if kind not in OPTIONS:
        import gateway.pipeline.checks
        import gateway.registry.catalogue  # noqa: F401

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    cpu = time.process_time()
    verdict: object = None
    if kind in OPTIONS:
        verdict = run_option(kind, path)
    elif kind == "read":
        from gateway.pipeline.checks import CHUNK_BYTES

        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                digest.update(chunk)
    elif kind == "expat":
        parser = expat.ParserCreate()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):  # CHUNK_BYTES
                parser.Parse(chunk, False)
        parser.Parse(b"", True)
    else:
        from gateway.core.declaration import DeclarationRules
        from gateway.pipeline.checks import MemberFile, check_declarations
        from gateway.registry.catalogue import load_schema

        rules = DeclarationRules(
            root="DmfAOriginal" if xsd else None,
            namespace=NS if xsd else None,
            schema=load_schema("DMFA", xsd) if xsd else None,
            schema_name=xsd.name if xsd else "the schema",
        )
        name = "FI.DMFA.006400.20260115.00001.R.1.1"
        member = MemberFile(name=name, size=path.stat().st_size, sha256="00" * 32, path=path)
        # The set as check_declarations reads it: its (FI, FS) pairs, FI by name.
        complete = SimpleNamespace(pairs=((SimpleNamespace(name=name), None),))
        found = check_declarations(complete, [member], rules)  # type: ignore[arg-type]
        verdict = None if found is None else str(found)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "ms": round(elapsed * 1000, 1),
        "cpu_ms": round(cpu * 1000, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "growth_mib": round((peak - base) / 1024, 1),
        "verdict": verdict,
    }


def measure(kind: str, path: Path, xsd: Path | None = None) -> dict[str, object]:
    """Run one case in a fresh interpreter; its JSON line back."""
    argv = [sys.executable, __file__, "--case", kind, str(path)]
    if xsd is not None:
        argv.append(str(xsd))
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--mib", type=int, default=256)
    args.add_argument("--xsd-mib", type=int, default=32)
    args.add_argument("--dir", type=Path)
    args.add_argument("--options-mib", type=int, default=32)
    args.add_argument("--depth", type=int, default=1_000_000)
    args.add_argument("--only-options", action="store_true", help="skip the first table")
    ns = args.parse_args()
    if not ns.only_options:
        checks_table(ns)
    options_table(ns)


def checks_table(ns: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=ns.dir) as scratch:
        folder = Path(scratch)
        laughs, big, schema = folder / "laughs.xml", folder / "big.xml", folder / "dmfa.xsd"
        laughs.write_bytes(BILLION_LAUGHS)
        schema.write_text(XSD)
        write_dmfa(big, ns.mib)
        size = big.stat().st_size / 2**20
        rows: list[tuple[str, str, Path, Path | None]] = [
            (f"billion laughs ({len(BILLION_LAUGHS)} B)", "check", laughs, None),
            (f"well-formed {size:.0f} MiB: read+sha256 (peer)", "read", big, None),
            (f"well-formed {size:.0f} MiB: bare expat (peer)", "expat", big, None),
            (f"well-formed {size:.0f} MiB: formal checks", "check", big, None),
        ]
        if ns.xsd_mib:
            small = folder / "xsd.xml"
            write_dmfa(small, ns.xsd_mib)
            mib = small.stat().st_size / 2**20
            rows += [
                (f"well-formed {mib:.0f} MiB: bare expat (peer)", "expat", small, None),
                (f"well-formed {mib:.0f} MiB: checks + root, ns, XSD", "check", small, schema),
            ]
        results = {label: measure(kind, path, xsd) for label, kind, path, xsd in rows}
    width = max(len(label) for label in results)
    print(f"{'case':<{width}}  {'ms':>9}  {'MiB/s':>7}  {'peak RSS':>10}  {'growth':>9}  verdict")
    for label, result in results.items():
        print(
            f"{label:<{width}}  {result['ms']:>9}  "
            f"{'' if 'laughs' in label else _rate(label, result):>7}  "
            f"{result['peak_rss_mib']:>6} MiB  {result['growth_mib']:>5} MiB  "
            f"{result['verdict'] or 'passed'}"
        )
    bare, checked = (results[label]["ms"] for label, *_ in rows[2:4])
    print(f"formal checks / bare expat on the same file: {float(checked) / float(bare):.2f}x")  # type: ignore[arg-type]


def options_table(ns: argparse.Namespace) -> None:
    """Each nesting-depth option on the DmfA-like, the element-dense and the deep FI."""
    with tempfile.TemporaryDirectory(dir=ns.dir) as scratch:
        folder = Path(scratch)
        files = {
            "DmfA-like": folder / "dmfa.xml",
            "dense": folder / "dense.xml",
            "deep": folder / "deep.xml",
        }
        write_dmfa(files["DmfA-like"], ns.options_mib)
        write_dense(files["dense"], ns.options_mib)
        write_deep(files["deep"], ns.depth)
        sizes = {doc: path.stat().st_size / 2**20 for doc, path in files.items()}
        results = {
            (doc, kind): measure(kind, path) for doc, path in files.items() for kind in OPTIONS
        }
    print()
    print(
        f"nesting-depth options (CPU time; deep: {ns.depth:,} nested elements, "
        f"{sizes['deep']:.1f} MiB)"
    )
    width = max(len(label) for label in OPTIONS.values())
    print(
        f"{'option':<{width}}  {'FI':<9}  {'MiB':>6}  {'cpu ms':>9}  {'MiB/s':>7}  "
        f"{'peak RSS':>10}  {'growth':>9}  verdict"
    )
    for (doc, kind), result in results.items():
        cpu_ms = float(result["cpu_ms"])  # type: ignore[arg-type]
        rate = sizes[doc] / max(cpu_ms, 0.1) * 1000
        verdict = str(result["verdict"] or "passed")
        print(
            f"{OPTIONS[kind]:<{width}}  {doc:<9}  {sizes[doc]:>6.1f}  {cpu_ms:>9.1f}  "
            f"{rate:>7.1f}  {result['peak_rss_mib']:>6} MiB  {result['growth_mib']:>5} MiB  "
            f"{verdict[:70]}"
        )


def _rate(label: str, result: dict[str, object]) -> str:
    mib = float(label.split("well-formed ")[1].split(" MiB")[0])
    return f"{mib / (float(result['ms']) / 1000):.0f}"  # type: ignore[arg-type]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        xsd_arg = Path(sys.argv[4]) if len(sys.argv) > 4 else None
        print(json.dumps(run_case(sys.argv[2], Path(sys.argv[3]), xsd_arg)))
    else:
        main()
