"""Write the PDF documents of the RAG knowledge base (`kb/company/**/*.pdf`).

The PDFs are committed; this script is how they were made, so they can be re-made or changed:
`python notebooks/data/make_pdfs.py`. It needs nothing but the standard library: a minimal
PDF 1.4 writer (Helvetica, one text object per page, lines wrapped at 90 characters), whose
text `pypdf` extracts back line by line. Output is byte-stable (no dates, no random ids).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent / "kb" / "company"

DOCUMENTS: dict[str, tuple[str, str]] = {
    "hr/benefits.pdf": (
        "Employee benefits",
        """
Employee benefits

Health insurance: every employee and their family are covered by private health insurance
from Meridian Health, paid in full by Brightwater. Coverage starts on the first day of work.

Learning budget: each employee has a learning budget of EUR 1,500 per year for courses,
books and conferences, plus 5 learning days. Unused budget does not carry over.

Sport: Brightwater pays a gym or sports subsidy of EUR 40 per month. Claim it in the expense
tool with the receipt.

Pension: in countries with voluntary pension schemes, Brightwater matches contributions up to
4 percent of salary.

Bicycle: employees may lease a bicycle through the company, paid from gross salary.
""",
    ),
    "finance/travel-policy.pdf": (
        "Travel policy",
        """
Travel policy

Booking: book all work travel through TripNest, the company travel tool, at least 14 days
ahead when possible. TripNest applies this policy automatically.

Flights: fly economy class for flights under 6 hours. Flights of 6 hours or longer may be
booked in premium economy. Business class needs the approval of a VP.

Hotels: hotel rooms are covered up to EUR 180 per night, or EUR 250 per night in London,
Paris and New York.

Trains: take the train instead of flying when the train journey takes less than 5 hours.

Per diem: meals while travelling follow the expense policy (up to EUR 45 per day).
""",
    ),
    "security/access-review.pdf": (
        "Access reviews and offboarding",
        """
Access reviews and offboarding

Quarterly review: every quarter, each manager reviews the access of their team members to
production systems, the data warehouse and admin tools, and removes what is no longer needed.
Security sends the review list in the first week of January, April, July and October.

Offboarding: when someone leaves, IT revokes all of their access within 4 hours of their last
working day ending. The manager collects the laptop and badge on the last day.

Shared accounts: shared accounts are not allowed. Service accounts have an owner and their
keys are rotated every 90 days.
""",
    ),
}


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(title: str, text: str) -> bytes:
    """A one-page PDF holding `text` (wrapped), with `title` in its document information."""
    lines: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        lines += [*textwrap.wrap(" ".join(paragraph.split()), 90), ""]
    stream = ["BT", "/F1 11 Tf", "14 TL", "56 790 Td"]
    stream += [f"({_escape(line)}) Tj T*" for line in lines]
    stream.append("ET")
    content = "\n".join(stream).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Title (" + _escape(title).encode("latin-1") + b") /Producer (aikit make_pdfs) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def main() -> None:
    for name, (title, text) in DOCUMENTS.items():
        target = HERE / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pdf_bytes(title, text))
        print(f"wrote {target.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
