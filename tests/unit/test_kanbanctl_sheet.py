"""kanbanctl's card sheets: where each card goes, and the SVG and PDF drawn of them."""

import re
import xml.etree.ElementTree as ET

import pytest
import segno

from clients.kanbanctl import pdf, sheet, sheet_pdf, sheet_svg
from clients.kanbanctl.sheet import CardFace, Page, QrCode

SVG = "{http://www.w3.org/2000/svg}"


def faces(count: int, loop: str = "BRACKET") -> list[CardFace]:
    return [
        CardFace(f"{loop}-{n:03d}", loop, "BRACKET", "STAMP", "WELD", 500)
        for n in range(1, count + 1)
    ]


def segno_matrix(code: str) -> list[list[bool]]:
    return [[bool(m) for m in row] for row in segno.make_qr(code).matrix]


def test_pages_hold_eight_cards_in_a_grid_within_the_page():
    found = sheet.pages(faces(10))
    assert [len(page.cards) for page in found] == [8, 2]
    for page in found:
        assert (page.width, page.height) == (210.0, 297.0)
        corners = [(card.x, card.y) for card in page.cards]
        assert len(set(corners)) == len(corners)
        for card in page.cards:
            assert card.x >= 0 and card.x + sheet.CARD_WIDTH <= page.width
            assert card.y >= 0 and card.y + sheet.CARD_HEIGHT <= page.height
    first = found[0].cards
    assert (first[1].x - first[0].x, first[2].y - first[0].y) == (95.0, 65.0)
    assert [card.code for card in found[1].cards] == ["BRACKET-009", "BRACKET-010"]


def test_a_strip_is_one_page_as_long_as_its_cards():
    page = sheet.strip(faces(5))
    assert len(page.cards) == 5
    assert page.height == 3 * sheet.CARD_HEIGHT + 2 * sheet.STRIP_MARGIN
    assert max(card.y for card in page.cards) + sheet.CARD_HEIGHT < page.height


def test_a_card_shows_its_qr_code_its_code_large_and_its_loop():
    card = sheet.card(faces(1)[0], 10.0, 20.0)
    assert [(t.role, t.text) for t in card.texts] == [
        ("code", "BRACKET-001"),
        ("detail", "Loop BRACKET"),
        ("detail", "Item BRACKET"),
        ("detail", "STAMP -> WELD"),
        ("detail", "500 per container"),
    ]
    code = card.texts[0]
    assert code.size == sheet.CODE_SIZE and code.size > max(t.size for t in card.texts[1:])
    # The QR code with its quiet zone fills its square on the card.
    qr = card.qr
    side = qr.module * (len(qr.matrix) + 2 * sheet.QUIET_ZONE_MODULES)
    assert side == pytest.approx(sheet.QR_SIDE)
    assert qr.x - sheet.QUIET_ZONE_MODULES * qr.module == pytest.approx(10.0 + sheet.PADDING)


def test_the_qr_code_is_the_card_code_and_never_a_micro_qr():
    qr = sheet.card(CardFace("A-1", "A", "I", "S", "C", 1), 0, 0).qr
    assert len(qr.matrix) >= 21  # Micro QR codes are 11 to 17 modules wide
    assert [list(row) for row in qr.matrix] == segno_matrix("A-1")


def test_the_runs_of_dark_modules_draw_the_matrix_exactly():
    qr = sheet.card(faces(1)[0], 0, 0).qr
    drawn = [[False] * len(qr.matrix) for _ in qr.matrix]
    for row, column, length in qr.runs():
        assert length > 0
        for n in range(column, column + length):
            assert not drawn[row][n]
            drawn[row][n] = True
    assert drawn == segno_matrix("BRACKET-001")


def test_a_long_code_is_set_smaller_to_fit_its_card():
    long_code = "X" * 40
    card = sheet.card(CardFace(long_code, "L", "I", "S", "C", 1), 0, 0)
    code = card.texts[0]
    assert code.size < sheet.CODE_SIZE
    width = code.size * sheet.GLYPH_WIDTH_EM * len(long_code)
    assert code.x + width <= sheet.CARD_WIDTH - sheet.PADDING + 1e-9
    assert sheet.fitted_size("AB", 100.0, 5.0) == 5.0


def svg_matrix(path: str, qr: QrCode) -> list[list[bool]]:
    """The modules an SVG path of runs covers, read back into a matrix."""
    drawn = [[False] * len(qr.matrix) for _ in qr.matrix]
    for x, y, width in re.findall(r"M([\d.]+) ([\d.]+)h([\d.]+)v", path):
        row = round((float(y) - qr.y) / qr.module)
        first = round((float(x) - qr.x) / qr.module)
        for n in range(first, first + round(float(width) / qr.module)):
            drawn[row][n] = True
    return drawn


def test_the_svg_sheet_has_each_code_as_text_and_as_a_qr_code():
    page = sheet.strip(faces(3))
    root = ET.fromstring(sheet_svg.render(page, "Cards of <BRACKET>"))
    assert root.get("width") == "210mm" and root.get("viewBox") == f"0 0 210 {page.height:g}"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Cards of <BRACKET>"
    cards = root.findall(f"{SVG}g")
    assert [g.get("id") for g in cards] == [
        "card-BRACKET-001",
        "card-BRACKET-002",
        "card-BRACKET-003",
    ]
    for g, placed in zip(cards, page.cards, strict=True):
        (code,) = [t.text for t in g.iter(f"{SVG}text") if t.get("class") == "code"]
        assert code == placed.code
        (qr,) = [p for p in g.iter(f"{SVG}path") if p.get("class") == "qr"]
        assert svg_matrix(qr.get("d", ""), placed.qr) == segno_matrix(placed.code)


def objects(document: bytes) -> dict[int, bytes]:
    return {
        int(n): body for n, body in re.findall(rb"(?m)^(\d+) 0 obj\n(.*?)\nendobj$", document, re.S)
    }


def test_the_pdf_is_well_formed():
    document = sheet_pdf.render(sheet.pages(faces(10)), "Cards (BRACKET)")
    assert document.startswith(b"%PDF-1.4\n") and document.endswith(b"%%EOF\n")
    # Every cross-reference points at its object, and startxref at the table.
    (start,) = map(int, re.findall(rb"startxref\n(\d+)\n", document))
    assert document[start:].startswith(b"xref\n0 ")
    entries = re.findall(rb"(\d{10}) 00000 n \n", document[start:])
    assert len(entries) == len(objects(document))
    for n, offset in enumerate(entries, start=1):
        assert document[int(offset) :].startswith(b"%d 0 obj\n" % n)
    # Each stream is as long as it says.
    for length, content in re.findall(
        rb"<< /Length (\d+) >>\nstream\n(.*?)\nendstream", document, re.S
    ):
        assert int(length) == len(content)
    assert b"/Type /Pages /Kids [" in document and b"/Count 2 >>" in document
    assert b"/Title (Cards \\(BRACKET\\))" in document
    assert b"/BaseFont /Courier-Bold" in document


def pdf_matrix(block: bytes, qr: QrCode, page: Page) -> list[list[bool]]:
    """The modules a QR block's rectangles cover, read back into a matrix."""
    k = sheet_pdf.POINTS_PER_MM
    drawn = [[False] * len(qr.matrix) for _ in qr.matrix]
    for line in block.splitlines():
        x, y, width, height = (float(v) / k for v in line.split()[:4])
        row = round((page.height - (y + height) - qr.y) / qr.module)
        first = round((x - qr.x) / qr.module)
        for n in range(first, first + round(width / qr.module)):
            drawn[row][n] = True
    return drawn


def test_the_pdf_has_each_code_as_text_and_as_a_qr_code():
    pages = sheet.pages(faces(3))
    document = sheet_pdf.render(pages, "Cards")
    (content,) = re.findall(rb"stream\n(.*?)\nendstream", document, re.S)
    blocks = re.findall(rb"/QR BMC 0 g\n(.*?)\nf EMC", content, re.S)
    assert len(blocks) == 3
    for block, placed in zip(blocks, pages[0].cards, strict=True):
        assert b"(%s) Tj" % placed.code.encode() in content
        assert pdf_matrix(block, placed.qr, pages[0]) == segno_matrix(placed.code)
    # The code in Courier-Bold, 11 mm; the details in Courier.
    assert content.count(b"/F2 31.181 Tf") == 3
    assert b"/F1 11.906 Tf" in content and b"(STAMP -> WELD) Tj" in content


def test_pdf_strings_escape_their_delimiters():
    assert pdf.literal("a(b)c\\d") == b"(a\\(b\\)c\\\\d)"
    assert pdf.literal("Größe") == b"(Gr\xf6\xdfe)"
