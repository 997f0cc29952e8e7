"""A minimal PDF writer: pages of drawing operators, set in the standard fonts.

The standard fonts (Courier, Helvetica ...) need no embedding: every PDF viewer
has them. Streams stay uncompressed: the files are small anyway, and their text
can be searched as it is.
"""

from collections.abc import Mapping, Sequence

HEADER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"  # the binary comment tells tools it is not text


def document(
    pages: Sequence[bytes],
    width: float,
    height: float,
    fonts: Mapping[str, str],
    title: str,
) -> bytes:
    """`pages` are content streams; `width` and `height` in points; `fonts` maps
    the resource names the streams use to standard fonts, e.g. {"F1": "Courier"}."""
    objects: list[bytes] = [b"", b""]  # 1 the catalog and 2 the page tree, once known

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font_refs = " ".join(f"/{name} {add(_font(base))} 0 R" for name, base in fonts.items())
    resources = f"<< /Font << {font_refs} >> >>".encode()
    media_box = f"[0 0 {number(width)} {number(height)}]".encode()
    kids = []
    for content in pages:
        stream = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        kids.append(
            add(
                b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Resources %s /Contents %d 0 R >>"
                % (media_box, resources, stream)
            )
        )
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kid_refs = " ".join(f"{kid} 0 R" for kid in kids).encode()
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))
    info = add(b"<< /Title %s /Producer (kanbanctl) >>" % literal(title))

    out = bytearray(HEADER)
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    # Each entry is exactly 20 bytes, as the cross-reference table requires.
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info,
        xref,
    )
    return bytes(out)


def _font(base: str) -> bytes:
    font = f"/Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding"
    return f"<< {font} >>".encode()


def literal(text: str) -> bytes:
    """A PDF string: in the fonts' encoding (WinAnsi), with its delimiters escaped."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("cp1252", errors="replace") + b")"


def number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")
