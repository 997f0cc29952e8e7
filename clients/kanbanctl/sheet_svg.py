"""A card sheet as one SVG document, in millimetres."""

from xml.sax.saxutils import escape, quoteattr

from clients.kanbanctl.sheet import CARD_HEIGHT, CARD_WIDTH, Page, PlacedCard, QrCode, Text

FONT = "'Courier New', Courier, monospace"


def render(page: Page, title: str) -> str:
    cards = "\n".join(_card(card) for card in page.cards)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{_n(page.width)}mm" height="{_n(page.height)}mm" \
viewBox="0 0 {_n(page.width)} {_n(page.height)}" font-family={quoteattr(FONT)}>
<title>{escape(title)}</title>
<rect width="100%" height="100%" fill="#fff"/>
{cards}
</svg>
"""


def _card(card: PlacedCard) -> str:
    texts = "\n".join(_text(text) for text in card.texts)
    # Dashed, light: where to cut, not part of the card.
    return f"""<g class="card" id={quoteattr(f"card-{card.code}")}>
<rect class="cut" x="{_n(card.x)}" y="{_n(card.y)}" width="{_n(CARD_WIDTH)}" \
height="{_n(CARD_HEIGHT)}" fill="none" stroke="#999" stroke-width="0.2" stroke-dasharray="2 1"/>
{_qr(card.qr)}
{texts}
</g>"""


def _qr(qr: QrCode) -> str:
    m = qr.module
    # One path of rectangles, drawn without anti-aliasing seams between modules.
    runs = "".join(
        f"M{_n(qr.x + column * m)} {_n(qr.y + row * m)}h{_n(length * m)}v{_n(m)}h{_n(-length * m)}z"
        for row, column, length in qr.runs()
    )
    return f'<path class="qr" d="{runs}" fill="#000" shape-rendering="crispEdges"/>'


def _text(text: Text) -> str:
    weight = ' font-weight="bold"' if text.role == "code" else ""
    return (
        f'<text class="{text.role}" x="{_n(text.x)}" y="{_n(text.baseline)}" '
        f'font-size="{_n(text.size)}"{weight}>{escape(text.text)}</text>'
    )


def _n(value: float) -> str:
    """A coordinate, short: to a thousandth of a millimetre."""
    return f"{value:.3f}".rstrip("0").rstrip(".")
