"""`pii`: personal data in a text, found by Presidio's pattern recognizers and redacted.

Presidio (`presidio-analyzer`) is used without its NLP engine: no spaCy model is loaded or
downloaded, only the regular expressions and checksums of its predefined recognizers run
(Luhn for payment cards, mod-97 for IBANs, the check letters of Spanish and Italian codes).
Its e-mail recognizer checks the domain with `tldextract`, which fetches the public suffix
list from the network by default; here it reads the snapshot that ships in the package, and
also accepts private and reserved domains (an address at `corp.internal` is personal data).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aikit.errors import MissingDependencyError
from aikit.guards._core import Verdict, guard

# entity -> the recognizer class in presidio_analyzer.predefined_recognizers
ENTITIES = {
    "EMAIL_ADDRESS": "EmailRecognizer",
    "PHONE_NUMBER": "PhoneRecognizer",
    "IBAN_CODE": "IbanRecognizer",
    "CREDIT_CARD": "CreditCardRecognizer",
    "IP_ADDRESS": "IpRecognizer",
    "US_SSN": "UsSsnRecognizer",
    "UK_NINO": "UkNinoRecognizer",
    "ES_NIF": "EsNifRecognizer",
    "ES_NIE": "EsNieRecognizer",
    "IT_FISCAL_CODE": "ItFiscalCodeRecognizer",
    "DE_TAX_ID": "DeTaxIdRecognizer",
    "PL_PESEL": "PlPeselRecognizer",
}
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "CH", "AT", "NL")
MIN_SCORE = 0.3
# Each recognizer runs only where a cheap pattern, looser than its own, finds something it
# could match (phone parsing, the slowest, only where 7+ digits stand close together): most
# texts hold no personal data, and most recognizers cost a pass of their own regex.
_HINTS = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "PHONE_NUMBER": re.compile(r"(?:\d[\s().\-/]{0,3}){7,}"),
    "IBAN_CODE": re.compile(r"[a-z]{2}\d{2}", re.I),
    "CREDIT_CARD": re.compile(r"\d{4}"),
    "IP_ADDRESS": re.compile(r"\d\.\d|[0-9a-f]:[0-9a-f:]|::", re.I),
    "US_SSN": re.compile(r"\d{3}"),
    "UK_NINO": re.compile(r"[a-z] ?\d\d ?\d\d", re.I),
    "ES_NIF": re.compile(r"\d{7}"),
    "ES_NIE": re.compile(r"\d{7}"),
    "IT_FISCAL_CODE": re.compile(r"[a-z]{6}[\dlmnp-v]{2}[a-ehlmpr-t]", re.I),
    "DE_TAX_ID": re.compile(r"\d{11}"),
    "PL_PESEL": re.compile(r"\d{11}"),
}
_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
_lock = threading.Lock()
_recognizers: dict[str, Any] = {}


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its entity type, where it is, how sure the recognizer is."""

    entity: str
    start: int
    end: int
    score: float


def _load() -> dict[str, Any]:
    with _lock:
        if _recognizers:
            return _recognizers
        try:
            import tldextract
            from presidio_analyzer import predefined_recognizers as pr
        except ImportError as exc:
            raise MissingDependencyError(
                "the pii guard needs Presidio's recognizers; install them with"
                " pip install 'aikit[guards]'"
            ) from exc
        offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        class OfflineEmailRecognizer(pr.EmailRecognizer):
            def validate_result(self, pattern_text: str) -> bool:
                # An address at a private or reserved domain (`.internal`, `.example`) is
                # personal data too: a dotted domain ending in letters is enough.
                domain = pattern_text.rsplit("@", 1)[-1]
                return offline(domain).fqdn != "" or bool(_DOMAIN.fullmatch(domain))

        for entity, cls_name in ENTITIES.items():
            if entity == "EMAIL_ADDRESS":
                _recognizers[entity] = OfflineEmailRecognizer()
            elif entity == "PHONE_NUMBER":
                _recognizers[entity] = pr.PhoneRecognizer(supported_regions=PHONE_REGIONS)
            else:
                _recognizers[entity] = getattr(pr, cls_name)()
        return _recognizers


def find(text: str, entities: tuple[str, ...] | None = None) -> list[Finding]:
    """Personal data in `text`, in order, overlaps resolved (the surer, then longer, wins)."""
    recognizers = _load()
    found: list[Finding] = []
    for entity in entities or tuple(ENTITIES):
        hint = _HINTS.get(entity)
        if hint is not None and not hint.search(text):
            continue
        recognizer = recognizers[entity]
        for r in recognizer.analyze(text, [entity], None):
            if r.score >= MIN_SCORE:
                found.append(Finding(r.entity_type, r.start, r.end, float(r.score)))
    found.sort(key=lambda f: (-f.score, -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in found:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    """`text` with each finding replaced by `<ENTITY>`."""
    out, last = [], 0
    for f in findings:
        out += [text[last : f.start], f"<{f.entity}>"]
        last = f.end
    return "".join([*out, text[last:]])


def reasons(findings: list[Finding]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.entity] = counts.get(f.entity, 0) + 1
    return tuple(f"{n} {entity}" for entity, n in counts.items())


@guard("pii")
def pii(text: str, *, context: Mapping[str, Any] | None = None) -> Verdict:
    """Personal data (e-mail, phone, IBAN, payment card, IP address, national identifiers of
    the US, UK, Spain, Italy, Germany and Poland): redacted as `<ENTITY>`."""
    findings = find(text)
    if not findings:
        return Verdict("pii")
    return Verdict(
        "pii",
        action="redact",
        reasons=reasons(findings),
        score=max(f.score for f in findings),
        redacted=redact(text, findings),
    )
