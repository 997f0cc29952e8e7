"""A sheet of kanban cards to print and cut out: where each card, its QR code and
its text go. Everything is in millimetres from a page's top-left corner; the
SVG and PDF writers only draw what this places.

A card shows its QR code (the card code, which the terminals' scanners read),
the code in large text for people, and the loop it belongs to: item, supplier ->
consumer station, and how much a container holds.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import segno

PAGE_WIDTH, PAGE_HEIGHT = 210.0, 297.0  # A4
CARD_WIDTH, CARD_HEIGHT = 95.0, 65.0
COLUMNS, ROWS_PER_PAGE = 2, 4
SIDE_MARGIN = (PAGE_WIDTH - COLUMNS * CARD_WIDTH) / 2
# A continuous sheet (SVG) has no page to centre the cards on.
STRIP_MARGIN = 10.0

PADDING = 3.0
QR_SIDE = 42.0  # with its quiet zone
QUIET_ZONE_MODULES = 4  # what the QR standard asks for
DETAIL_X = PADDING + QR_SIDE + 2.0
DETAIL_SIZE = 4.2
CODE_SIZE = 11.0
CODE_BASELINE = CARD_HEIGHT - 6.0
# Text is set in a monospaced font: every glyph is this wide, so widths are exact.
GLYPH_WIDTH_EM = 0.6


@dataclass(frozen=True)
class CardFace:
    """What a card says."""

    code: str
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    container_quantity: int

    def details(self) -> list[str]:
        return [
            f"Loop {self.loop_id}",
            f"Item {self.item_id}",
            f"{self.supplier_station_id} -> {self.consumer_station_id}",
            f"{self.container_quantity} per container",
        ]


@dataclass(frozen=True)
class Text:
    x: float
    baseline: float
    size: float
    text: str
    # The card code is set large and bold; the details plain.
    role: Literal["code", "detail"]


@dataclass(frozen=True)
class QrCode:
    x: float  # the first module's top-left corner (inside the quiet zone)
    y: float
    module: float  # one module's side
    matrix: tuple[tuple[bool, ...], ...]  # rows of modules, True for dark

    def runs(self) -> Iterator[tuple[int, int, int]]:
        """Dark modules as horizontal runs (row, first column, length): a few
        rectangles per row instead of one per module."""
        for row, modules in enumerate(self.matrix):
            column = 0
            while column < len(modules):
                if not modules[column]:
                    column += 1
                    continue
                start = column
                while column < len(modules) and modules[column]:
                    column += 1
                yield row, start, column - start


@dataclass(frozen=True)
class PlacedCard:
    code: str
    x: float  # the card's top-left corner: it is cut along its frame
    y: float
    qr: QrCode
    texts: tuple[Text, ...]


@dataclass(frozen=True)
class Page:
    width: float
    height: float
    cards: tuple[PlacedCard, ...]


def pages(faces: Sequence[CardFace]) -> list[Page]:
    """A4 pages of COLUMNS x ROWS_PER_PAGE cards, centred, for printing as they are."""
    per_page = COLUMNS * ROWS_PER_PAGE
    top = (PAGE_HEIGHT - ROWS_PER_PAGE * CARD_HEIGHT) / 2
    return [
        Page(PAGE_WIDTH, PAGE_HEIGHT, _grid(faces[start : start + per_page], SIDE_MARGIN, top))
        for start in range(0, len(faces), per_page)
    ]


def strip(faces: Sequence[CardFace]) -> Page:
    """One page as long as the cards need, COLUMNS wide."""
    rows = -(-len(faces) // COLUMNS)
    return Page(
        COLUMNS * CARD_WIDTH + 2 * STRIP_MARGIN,
        rows * CARD_HEIGHT + 2 * STRIP_MARGIN,
        _grid(faces, STRIP_MARGIN, STRIP_MARGIN),
    )


def _grid(faces: Sequence[CardFace], left: float, top: float) -> tuple[PlacedCard, ...]:
    return tuple(
        card(face, left + (n % COLUMNS) * CARD_WIDTH, top + (n // COLUMNS) * CARD_HEIGHT)
        for n, face in enumerate(faces)
    )


def card(face: CardFace, x: float, y: float) -> PlacedCard:
    # Never a Micro QR: not every scanner reads those.
    matrix = tuple(tuple(bool(m) for m in row) for row in segno.make_qr(face.code).matrix)
    module = QR_SIDE / (len(matrix) + 2 * QUIET_ZONE_MODULES)
    quiet = QUIET_ZONE_MODULES * module
    qr = QrCode(x + PADDING + quiet, y + PADDING + quiet, module, matrix)
    detail_width = CARD_WIDTH - DETAIL_X - PADDING
    details = tuple(
        Text(
            x + DETAIL_X,
            y + 13.0 + 8.0 * n,
            fitted_size(line, detail_width, DETAIL_SIZE),
            line,
            "detail",
        )
        for n, line in enumerate(face.details())
    )
    code_width = CARD_WIDTH - 2 * (PADDING + 1.0)
    code = Text(
        x + PADDING + 1.0,
        y + CODE_BASELINE,
        fitted_size(face.code, code_width, CODE_SIZE),
        face.code,
        "code",
    )
    return PlacedCard(face.code, x, y, qr, (code, *details))


def fitted_size(text: str, width: float, largest: float) -> float:
    """The largest font size up to `largest` at which `text` fits in `width`."""
    return min(largest, width / (GLYPH_WIDTH_EM * max(len(text), 1)))
