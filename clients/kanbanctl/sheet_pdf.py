"""A card sheet as a PDF of A4 pages."""

from collections.abc import Sequence

from clients.kanbanctl import pdf
from clients.kanbanctl.pdf import literal, number
from clients.kanbanctl.sheet import CARD_HEIGHT, CARD_WIDTH, Page, PlacedCard, QrCode, Text

POINTS_PER_MM = 72 / 25.4
FONTS = {"F1": "Courier", "F2": "Courier-Bold"}


def render(pages: Sequence[Page], title: str) -> bytes:
    width, height = pages[0].width, pages[0].height
    return pdf.document(
        [_page(page) for page in pages],
        width * POINTS_PER_MM,
        height * POINTS_PER_MM,
        FONTS,
        title,
    )


def _page(page: Page) -> bytes:
    # PDF measures in points from the bottom-left corner; the sheet in mm from the top-left.
    def pt(mm: float) -> str:
        return number(mm * POINTS_PER_MM)

    def y(mm: float) -> str:
        return pt(page.height - mm)

    def card(placed: PlacedCard) -> list[str]:
        return [
            # Dashed, light: where to cut, not part of the card.
            "q 0.6 G 0.5 w [6 3] 0 d",
            f"{pt(placed.x)} {y(placed.y + CARD_HEIGHT)} {pt(CARD_WIDTH)} {pt(CARD_HEIGHT)} re S Q",
            *qr(placed.qr),
            *(text(t) for t in placed.texts),
        ]

    def qr(code: QrCode) -> list[str]:
        m = code.module
        runs = [
            f"{pt(code.x + column * m)} {y(code.y + (row + 1) * m)} {pt(run * m)} {pt(m)} re"
            for row, column, run in code.runs()
        ]
        # Marked as one QR code: viewers ignore the tag, tools can find each code.
        return ["/QR BMC 0 g", *runs, "f EMC"]

    def text(t: Text) -> str:
        font = "F2" if t.role == "code" else "F1"
        # Latin-1 turns each byte of the string into one character and back.
        string = literal(t.text).decode("latin-1")
        return f"BT /{font} {pt(t.size)} Tf {pt(t.x)} {y(t.baseline)} Td {string} Tj ET"

    lines = [line for placed in page.cards for line in card(placed)]
    return "\n".join(lines).encode("latin-1")
