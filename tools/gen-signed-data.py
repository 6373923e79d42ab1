#!/usr/bin/env python3
"""Regenerate every DKIM-signed fixture of dmarc-milter and the zone files
that publish their public keys.

    pip install dkimpy pynacl cryptography
    python3 tools/gen-signed-data.py

Writes (and only writes):

    examples/data/demo.zone, newsletter.eml, forged.eml, forwarded.eml,
        subdomain.eml                      (LF line endings, for reading)
    crates/dmarc-verifier/tests/data/signed.zone, dkim-*.eml
                                           (CRLF, except dkim-pass-lf.eml)
    crates/dmarc-verifier/benches/data/bench.zone, rsa-4k.eml,
        rsa-100k.eml, ed25519-4k.eml       (CRLF)

Every run makes fresh key pairs.  They live only in this process's memory:
the public halves go into the zone files, the private halves are dropped
when the script exits and are never written anywhere, so no private key
ever touches the repository (or the disk).  Message texts, dates and the
t= tag are fixed, so a re-run only changes the keys, b= values and the
p= values in the zones.

At the end the script re-reads every .eml it wrote, verifies every
DKIM-Signature with dkimpy against the zone files it wrote (parsed back
from disk), checks the expected results, and prints a summary table.  It
exits non-zero if any expectation fails.  `--check` runs only that
verification, on the files already in the tree, without regenerating.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import random
import re
import secrets
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

try:
    import dkim
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import nacl.encoding
    import nacl.signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError as e:  # pragma: no cover
    sys.exit(f"missing module ({e}); run: pip install dkimpy pynacl cryptography")

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "examples" / "data"
TEST_DIR = REPO / "crates" / "dmarc-verifier" / "tests" / "data"
BENCH_DIR = REPO / "crates" / "dmarc-verifier" / "benches" / "data"

#: Fixed DKIM t= value: 2024-06-10 06:13:20 UTC.  No x= is ever set.
SIG_TIME = 1718000000
#: Zone serial (fixed so that re-runs only change key material).
SERIAL = 2024061001
TTL = 300

#: Headers signed by every signature (plus List-Unsubscribe* where present).
SIGNED_HEADERS = ["from", "to", "subject", "date", "message-id",
                  "mime-version", "content-type"]


def rfc5322_date(offset: int = 0) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(SIG_TIME + offset))


# --------------------------------------------------------------------------
# Keys (in memory only)
# --------------------------------------------------------------------------

@dataclass
class Key:
    selector: str
    domain: str
    kind: str            # "rsa" or "ed25519"
    bits: int
    public_b64: str      # p= value
    _private: bytes = field(repr=False)  # PEM (rsa) / base64 seed (ed25519); never written

    @property
    def owner(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}."

    @property
    def txt(self) -> str:
        return f"v=DKIM1; k={self.kind}; p={self.public_b64}"


def _is_probable_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(64):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """`cryptography` refuses to *generate* keys below 1024 bits but loads
    them fine, so the deliberately weak test key is built by hand."""
    e = 65537
    while True:
        primes = []
        while len(primes) < 2:
            c = secrets.randbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if (c - 1) % e and _is_probable_prime(c):
                primes.append(c)
        p, q = primes
        if p == q or (p * q).bit_length() != bits:
            continue
        d = pow(e, -1, (p - 1) * (q - 1))
        nums = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
            rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q))
        return nums.private_key()


def rsa_key(selector: str, domain: str, bits: int) -> Key:
    if bits >= 1024:
        priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        priv = _small_rsa_key(bits)
    assert priv.key_size == bits, (priv.key_size, bits)
    pem = priv.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key(selector, domain, "rsa", bits, base64.b64encode(spki).decode(), pem)


def ed25519_key(selector: str, domain: str) -> Key:
    sk = nacl.signing.SigningKey.generate()
    return Key(selector, domain, "ed25519", 256,
               base64.b64encode(bytes(sk.verify_key)).decode(),
               base64.b64encode(bytes(sk)))


# --------------------------------------------------------------------------
# Messages and signing
# --------------------------------------------------------------------------

def crlf(text: str) -> bytes:
    """Text written with "\\n" (header folding as "\\n\\t") -> CRLF bytes."""
    assert "\r" not in text
    return text.replace("\n", "\r\n").encode("ascii")


def to_lf(data: bytes) -> bytes:
    out = data.replace(b"\r\n", b"\n")
    assert b"\r" not in out
    return out


def header_block(headers: list[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in headers)


class _Signer(dkim.DKIM):
    """dkimpy writes h= as "from : to : ..." (legal FWS, but unusual).
    Emit the conventional "from:to:..." instead, keeping a space after a
    colon every ~60 characters so that dkimpy's folder (which breaks at
    spaces, else mid-token) never splits a header name.  The change is
    made before the header is hashed, so the signature covers it."""

    def gen_header(self, fields, *args, **kwargs):
        def compact(value: bytes) -> bytes:
            runs: list[bytes] = []
            for name in value.split(b" : "):
                if runs and len(runs[-1]) + 1 + len(name) <= 60:
                    runs[-1] += b":" + name
                else:
                    runs.append(name)
            return b": ".join(runs)
        fields = [(k, compact(v)) if k == b"h" else (k, v) for k, v in fields]
        return super().gen_header(fields, *args, **kwargs)


def sign(message: bytes, key: Key, algo: bytes, headers: list[str]) -> bytes:
    """Return one folded `DKIM-Signature: ...\\r\\n` field for the CRLF
    `message`, c=relaxed/relaxed, fixed t=, no x=."""
    assert b"\r\n" in message
    present = {l.split(b":", 1)[0].strip().lower().decode()
               for l in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
               if l and l[:1] not in (b" ", b"\t")}
    missing = [h for h in headers if h not in present]
    assert not missing, f"signing absent headers {missing}"
    # dkimpy stamps t= from time.time(); pin it.
    with mock.patch.object(dkim.time, "time", return_value=float(SIG_TIME)):
        signer = _Signer(message, signature_algorithm=algo, linesep=b"\r\n")
        sig = signer.sign(key.selector.encode(), key.domain.encode(), key._private,
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[h.encode() for h in headers])
    assert sig.startswith(b"DKIM-Signature: ") and sig.endswith(b"\r\n")
    return sig


# Deterministic newsletter-ish filler text (same text on every run).
_WORDS = ("the our this week team update new release community event guide "
          "customers support service product report results plan partners "
          "members office project quarter spring summer garden library "
          "workshop schedule program volunteers meeting notes review launch "
          "feedback survey mobile app account security improvements faster "
          "simpler easier reliable local regional annual monthly morning "
          "evening weekend details registration open free limited seats "
          "speakers session talk demo questions answers thanks everyone "
          "who joined helped shared ideas stories photos highlights from "
          "with about for and to in on at by of is are was were will can "
          "now soon today tomorrow next last first").split()


def filler_paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 4)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
        s = " ".join(words)
        sentences.append(s[0].upper() + s[1:] + ".")
    return textwrap.fill(" ".join(sentences), width=72)


def filler_body(seed: int, target_bytes: int) -> str:
    """Newsletter-looking text of about `target_bytes` (LF-counted; the
    caller converts to CRLF), identical on every run for a given seed."""
    rng = random.Random(seed)
    head = ["Hello,", "", "Here is this month's Example News digest.", ""]
    foot = ["Read the full edition at https://news.example.com/2024/06/", "",
            "Example News, 1 Example Way, Example City", ""]
    parts, n = [], 0
    while True:
        chunk = []
        if n % 3 == 0:
            title = f"{n // 3 + 1}. " + " ".join(rng.choice(_WORDS) for _ in range(3)).title()
            chunk += [title, "-" * len(title), ""]
        chunk += [filler_paragraph(rng), ""]
        size = lambda lines: len("\n".join(lines)) * 2 - len("".join(lines))  # CRLF size
        with_chunk = size(head + parts + chunk + foot)
        if with_chunk > target_bytes and parts:
            if with_chunk - target_bytes < target_bytes - size(head + parts + foot):
                parts += chunk  # overshooting is closer than stopping short
            break
        parts += chunk
        n += 1
    return "\n".join(head + parts + foot)


# --------------------------------------------------------------------------
# Zone files
# --------------------------------------------------------------------------

#: Long TXT records are written the usual BIND way, one record with several
#: quoted character-strings inside parentheses:
#:     name IN TXT ( "v=DKIM1; k=rsa; p=...255 bytes..."
#:             "...rest" )
#: The project's own zone reader (dmarc_verifier::dns::zone) reads this.
#: Caution: the zone-file lexer of hickory-proto 0.26.3 does not: inside
#: parentheses it splits quoted strings at spaces and keeps the quote
#: characters, corrupting the key.  Set this to False to write the
#: equivalent one-line form `name IN TXT "part1" "part2"` instead, which
#: every parser reads the same way.
TXT_PARENS = True


def txt_rdata(value: str) -> str:
    """One TXT record; values over 255 bytes become several <=255-byte
    character-strings (concatenated by DKIM verifiers, RFC 6376 3.6.2.2)."""
    assert value.isascii() and '"' not in value and "\\" not in value
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    if len(chunks) == 1:
        return f'"{value}"'
    if not TXT_PARENS:
        return " ".join(f'"{c}"' for c in chunks)
    pad = " " * 8
    return "( " + f"\n{pad}".join(f'"{c}"' for c in chunks) + " )"


def zone_text(title: str, records: list[tuple[str, str, str]]) -> str:
    lines = [f"$TTL {TTL}",
             f"; {title}",
             "; Generated by tools/gen-signed-data.py; do not edit by hand, re-run it.",
             "; All names are absolute: the file is served as one zone at the root.",
             "; DKIM keys are fresh on every run; their private halves were discarded.",
             ""]
    for owner, rtype, rdata in records:
        if owner is None:               # blank line / comment
            lines.append(rdata)
            continue
        assert owner.endswith("."), owner
        if rtype == "TXT":
            rdata = txt_rdata(rdata)
        lines.append(f"{owner:<36} IN {rtype:<4} {rdata}")
    return "\n".join(lines).rstrip("\n") + "\n"


def apex(domain: str) -> list[tuple[str, str, str]]:
    return [
        (f"{domain}.", "SOA",
         f"ns1.{domain}. hostmaster.{domain}. ( {SERIAL} 3600 900 604800 {TTL} )"),
        (f"{domain}.", "NS", f"ns1.{domain}."),
    ]


def comment(text: str = "") -> tuple[None, None, str]:
    return (None, None, f"; {text}" if text else "")


def parse_zone(text: str) -> dict[tuple[str, str], list]:
    """Minimal RFC 1035 master-file reader for the files written above
    ($TTL, comments, parentheses, quoted strings, absolute owners); RDATA
    is parsed and validated by dnspython.  Returns {(owner, TYPE): [rdata]}."""
    logical: list[str] = []
    buf, depth = [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        out, inq = [], False
        for ch in line:
            if ch == '"':
                inq = not inq
            elif not inq and ch == ";":
                break
            elif not inq and ch in "()":
                depth += 1 if ch == "(" else -1
                assert depth in (0, 1), f"line {lineno}: bad parentheses"
                ch = " "
            out.append(ch)
        assert not inq, f"line {lineno}: unterminated string"
        buf.append("".join(out))
        if depth == 0:
            joined = " ".join(buf)
            buf = []
            if joined.strip():
                logical.append(joined)
    assert depth == 0 and not buf, "unclosed parenthesis at end of zone"
    ttl = None
    zone: dict[tuple[str, str], list] = {}
    for entry in logical:
        if entry.startswith("$TTL"):
            ttl = int(entry.split()[1])
            continue
        assert not entry[0].isspace(), f"owner missing: {entry!r}"
        owner, cls, rtype, rest = entry.split(None, 3)
        assert ttl is not None and cls == "IN", entry
        assert owner.endswith("."), f"relative owner name {owner}"
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype),
                                 rest, origin=dns.name.root)
        zone.setdefault((owner.lower(), rtype), []).append(rd)
    return zone


def zone_txt(zone, name: str) -> list[bytes]:
    name = name.lower() if name.endswith(".") else name.lower() + "."
    return [b"".join(rd.strings) for rd in zone.get((name, "TXT"), [])]


# --------------------------------------------------------------------------
# 1. examples/data
# --------------------------------------------------------------------------

def received(helo: str, rdns: str, ip: str, by: str, smtp: str, qid: str,
             rcpt: str, offset: int) -> tuple[str, str]:
    return ("Received",
            f"from {helo} ({rdns} [{ip}])\n\tby {by} (Postfix) with {smtp} id {qid}\n"
            f"\tfor <{rcpt}>; {rfc5322_date(offset)} (UTC)")


def build_demo() -> dict:
    k_news = rsa_key("news2048", "example.com", 2048)
    k_ed1 = ed25519_key("ed1", "example.org")

    records = [
        comment("example.com: the sending brand (p=reject, subdomains quarantine)"),
        *apex("example.com"),
        ("ns1.example.com.", "A", "192.0.2.53"),
        ("example.com.", "TXT", "v=spf1 ip4:192.0.2.0/28 -all"),
        ("_dmarc.example.com.", "TXT",
         "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc-reports@example.com; adkim=r; aspf=r"),
        (k_news.owner, "TXT", k_news.txt),
        ("mail.example.com.", "A", "192.0.2.10"),
        comment("billing.example.com exists but has no SPF and no DMARC record: sp= applies"),
        ("billing.example.com.", "A", "192.0.2.20"),
        comment(),
        comment("example.org: Alice's domain (p=quarantine, Ed25519 DKIM)"),
        *apex("example.org"),
        ("ns1.example.org.", "A", "198.51.100.53"),
        ("example.org.", "TXT", "v=spf1 ip4:198.51.100.0/28 -all"),
        ("_dmarc.example.org.", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"),
        (k_ed1.owner, "TXT", k_ed1.txt),
        ("mail.example.org.", "A", "198.51.100.10"),
        comment(),
        comment("example.net: forwarder / receiving host and an ESP bounce domain; no DMARC record"),
        *apex("example.net"),
        ("ns1.example.net.", "A", "203.0.113.53"),
        ("example.net.", "TXT", "v=spf1 ip4:203.0.113.0/28 -all"),
        ("forwarder.example.net.", "A", "203.0.113.5"),
        ("bounce.example.net.", "TXT", "v=spf1 ip4:192.0.2.0/28 -all"),
    ]
    zone = zone_text("Offline demo zone for `check-eml` (examples/data/*.eml)", records)

    msgs: dict[str, bytes] = {}

    # newsletter.eml: ESP bounce domain (SPF pass, unaligned) + aligned DKIM.
    news_headers = [
        ("From", "Example News <news@example.com>"),
        ("To", "reader@example.net"),
        ("Subject", "Example News: June 2024 edition"),
        ("Date", rfc5322_date()),
        ("Message-ID", "<20240610061320.4f2a9c@news.example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "7bit"),
        ("List-Id", "Example News <news.example.com>"),
        ("List-Unsubscribe", "<mailto:unsubscribe-123@bounce.example.net>,\n"
                             "\t<https://news.example.com/unsubscribe/123>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", "june2024:newsletter:example-news"),
    ]
    news_body = textwrap.dedent("""\
        Hello reader,

        Welcome to the June edition of Example News.

        What's new
        ----------
        * The community garden opens on Saturday at 09:00. Bring gloves;
          tools and coffee are on us.
        * Our summer workshop series starts next week. Seats are limited,
          so please register early on the events page.
        * The library now lends e-readers for up to three weeks.

        From the team
        -------------
        Thank you to everyone who answered last month's survey. You asked
        for shorter emails and a printable calendar: both are on the way.

        Read this edition online: https://news.example.com/2024/06/

        You receive this email because you subscribed at news.example.com.
        Unsubscribe with one click: https://news.example.com/unsubscribe/123
        """)
    origin = crlf(header_block(news_headers) + "\n" + news_body)
    sig = sign(origin, k_news, b"rsa-sha256",
               SIGNED_HEADERS + ["list-unsubscribe", "list-unsubscribe-post"])
    trace = crlf(header_block([
        ("Return-Path", "<bounce-123@bounce.example.net>"),
        received("mail.example.com", "mail.example.com", "192.0.2.10", "mx.example.net",
                 "ESMTPS", "4XyZ1abc", "reader@example.net", 4),
    ]))
    msgs["newsletter.eml"] = trace + sig + origin

    # forged.eml: spoofed CEO, unsigned, from an address outside every SPF record.
    forged_headers = [
        ("From", '"Example CEO" <ceo@example.com>'),
        ("Reply-To", '"Example CEO" <ceo.private.office@example.org>'),
        ("To", "accounts@example.net"),
        ("Subject", "Urgent: wire transfer before 17:00 today"),
        ("Date", rfc5322_date(-3600 * 2)),
        ("Message-ID", "<a7c3e91f0b2d4e68@unknown.example.net>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
        ("X-Priority", "1 (Highest)"),
        ("Importance", "High"),
    ]
    forged_body = textwrap.dedent("""\
        Hi,

        I am in meetings all afternoon and cannot take calls. We need to
        settle an overdue invoice with a new supplier today, otherwise the
        contract is cancelled and we lose the discount.

        Please wire EUR 48,750.00 to the account below before 17:00 and
        send me the confirmation by reply. Keep this confidential until
        the acquisition is announced next week.

          Beneficiary: Example Holdings Ltd
          IBAN:        XX00 0000 0000 0000 0000 00
          Reference:   INV-2024-0611

        Do not call the supplier directly, they only deal with me. I will
        explain everything on Monday.

        Thanks for your help,

        Example CEO
        Sent from my phone
        """)
    msgs["forged.eml"] = crlf(header_block([
        ("Return-Path", "<ceo@example.com>"),
        received("unknown.example.net", "unknown", "198.51.100.200", "mx.example.net",
                 "ESMTP", "4XyZ2def", "accounts@example.net", -3600 * 2 + 3),
        *forged_headers,
    ]) + "\n" + forged_body)

    # forwarded.eml: Ed25519-signed at example.org, relayed by forwarder.example.net.
    fwd_headers = [
        ("From", "Alice <alice@example.org>"),
        ("To", "bob@example.net"),
        ("Subject", "Re: Saturday hike"),
        ("Date", rfc5322_date()),
        ("Message-ID", "<5d1e0c2b-9a47-4f3e-8b61-2c7f0e4a9d13@example.org>"),
        ("In-Reply-To", "<CAF0b0bexample1234@example.net>"),
        ("References", "<CAF0b0bexample1234@example.net>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8; format=flowed"),
        ("Content-Transfer-Encoding", "7bit"),
        ("User-Agent", "Example Mail 3.2"),
    ]
    fwd_body = textwrap.dedent("""\
        Hi Bob,

        Saturday works for me. Let's meet at the trailhead car park at
        08:30; the forecast says the rain clears by nine.

        I'll bring the map and some sandwiches. Could you bring the first
        aid kit and a flask of tea? If the upper path is still closed we
        can take the river loop instead, it is about the same distance.

        Alice

        On Sun, 9 Jun 2024 at 19:02, Bob <bob@example.net> wrote:
        > Are we still on for the hike this weekend? Saturday or Sunday
        > are both fine for me.
        """)
    origin = crlf(header_block(fwd_headers) + "\n" + fwd_body)
    sig = sign(origin, k_ed1, b"ed25519-sha256", SIGNED_HEADERS)
    trace = crlf(header_block([
        ("Return-Path", "<alice@example.org>"),
        received("forwarder.example.net", "forwarder.example.net", "203.0.113.5",
                 "mx.example.com", "ESMTPS", "4XyZ3ghi", "bob@example.com", 9),
        received("mail.example.org", "mail.example.org", "198.51.100.10",
                 "forwarder.example.net", "ESMTPS", "4XyZ0jkl", "bob@example.net", 4),
    ]))
    msgs["forwarded.eml"] = trace + sig + origin

    # subdomain.eml: unsigned mail from a subdomain without its own DMARC record.
    sub_headers = [
        ("From", "billing@billing.example.com"),
        ("To", "customer@example.net"),
        ("Subject", "Your invoice INV-2024-0610 is ready"),
        ("Date", rfc5322_date(-1800)),
        ("Message-ID", "<inv-2024-0610.77@billing.example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
        ("X-Mailer", "Example Invoicing 5.1"),
    ]
    sub_body = textwrap.dedent("""\
        Dear customer,

        Your invoice for May 2024 is ready.

          Invoice number:  INV-2024-0610
          Amount due:      USD 129.00
          Due date:        24 June 2024

        You can view and pay the invoice in your account at
        https://billing.example.com/invoices/INV-2024-0610

        If you pay by bank transfer, please quote the invoice number as
        the payment reference. Payments made in the last three business
        days may not appear yet.

        Questions about this invoice? Reply to this message or call the
        billing team on weekdays between 09:00 and 17:00.

        Kind regards,
        Example Billing
        """)
    msgs["subdomain.eml"] = crlf(header_block([
        ("Return-Path", "<billing@billing.example.com>"),
        received("smtp.billing.example.com", "smtp.billing.example.com", "198.51.100.77",
                 "mx.example.net", "ESMTPS", "4XyZ4mno", "customer@example.net", -1800 + 2),
        *sub_headers,
    ]) + "\n" + sub_body)

    return {"zone": zone, "messages": msgs}


# --------------------------------------------------------------------------
# 2. crates/dmarc-verifier/tests/data
# --------------------------------------------------------------------------

def test_message(tag: str, subject: str, body: str, sender: str = "user@example.com") -> bytes:
    return crlf(header_block([
        ("From", sender),
        ("To", "rcpt@example.org"),
        ("Subject", subject),
        ("Date", rfc5322_date()),
        ("Message-ID", f"<{tag}.20240610061320@example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]) + "\n" + body)


TEST_BODY = textwrap.dedent("""\
    Hi,

    The quarterly review meeting is on Tuesday at 10:00 in room 4.
    Please bring the sales figures.

    Thanks,
    User
    """)


def build_tests() -> dict:
    keys = {
        "s2048": rsa_key("s2048", "example.com", 2048),
        "ed": ed25519_key("ed", "example.com"),
        "sub": rsa_key("s2048", "sub.example.com", 2048),
        "third": rsa_key("third", "example.net", 2048),
        "sha1": rsa_key("sha1", "example.com", 2048),
        "weak": rsa_key("weak", "example.com", 512),
        "k1024": rsa_key("k1024", "example.com", 1024),
    }
    records = [
        comment("DKIM public keys only: the tests add their own SPF and DMARC records."),
        *apex("example.com"),
        (keys["s2048"].owner, "TXT", keys["s2048"].txt),
        (keys["ed"].owner, "TXT", keys["ed"].txt),
        (keys["sha1"].owner, "TXT", keys["sha1"].txt),
        comment("RSA-512: too weak, RFC 8301 says verifiers must not accept it"),
        (keys["weak"].owner, "TXT", keys["weak"].txt),
        comment("RSA-1024: exactly the RFC 8301 minimum, must pass"),
        (keys["k1024"].owner, "TXT", keys["k1024"].txt),
        comment("sub.example.com is not delegated (no NS): same zone as example.com"),
        (keys["sub"].owner, "TXT", keys["sub"].txt),
        comment(),
        *apex("example.net"),
        (keys["third"].owner, "TXT", keys["third"].txt),
    ]
    zone = zone_text("DKIM keys for crates/dmarc-verifier/tests/data/*.eml", records)

    m: dict[str, bytes] = {}

    def signed(msg: bytes, key: Key, algo: bytes = b"rsa-sha256") -> bytes:
        return sign(msg, key, algo, SIGNED_HEADERS) + msg

    m["dkim-pass-rsa.eml"] = signed(
        test_message("pass-rsa", "Quarterly review (RSA)", TEST_BODY), keys["s2048"])
    m["dkim-pass-ed25519.eml"] = signed(
        test_message("pass-ed25519", "Quarterly review (Ed25519)", TEST_BODY),
        keys["ed"], b"ed25519-sha256")
    m["dkim-sub.eml"] = signed(
        test_message("sub", "Quarterly review (signed by sub.example.com)", TEST_BODY),
        keys["sub"])
    m["dkim-third-party.eml"] = signed(
        test_message("third-party", "Quarterly review (signed by example.net)", TEST_BODY),
        keys["third"])
    m["dkim-rsa-sha1.eml"] = signed(
        test_message("rsa-sha1", "Quarterly review (rsa-sha1)", TEST_BODY),
        keys["sha1"], b"rsa-sha1")
    m["dkim-weak-key.eml"] = signed(
        test_message("weak-key", "Quarterly review (512-bit key)", TEST_BODY), keys["weak"])
    m["dkim-1024.eml"] = signed(
        test_message("k1024", "Quarterly review (1024-bit key)", TEST_BODY), keys["k1024"])

    tampered = signed(
        test_message("body-tampered", "Quarterly review (tampered)", TEST_BODY), keys["s2048"])
    assert tampered.count(b"on Tuesday") == 1
    m["dkim-body-tampered.eml"] = tampered.replace(b"on Tuesday", b"on Thursday")

    # Two signatures. Topmost (index 0): d=example.net, valid.  Second
    # (index 1): d=example.com, made over a different body -> bh mismatch.
    two = test_message("two-sigs", "Quarterly review (two signatures)", TEST_BODY)
    other_body = test_message("two-sigs", "Quarterly review (two signatures)",
                              TEST_BODY.replace("on Tuesday", "on Wednesday"))
    sig_com = sign(other_body, keys["s2048"], b"rsa-sha256", SIGNED_HEADERS)
    with_com = sig_com + two
    sig_net = sign(with_com, keys["third"], b"rsa-sha256", SIGNED_HEADERS)
    m["dkim-two-sigs.eml"] = sig_net + with_com

    # Same bytes as dkim-pass-rsa.eml, LF line endings.
    m["dkim-pass-lf.eml"] = to_lf(m["dkim-pass-rsa.eml"])

    return {"zone": zone, "messages": m}


# --------------------------------------------------------------------------
# 3. crates/dmarc-verifier/benches/data
# --------------------------------------------------------------------------

def build_bench() -> dict:
    k_rsa = rsa_key("bench2048", "example.com", 2048)
    k_ed = ed25519_key("benched", "example.com")
    records = [
        *apex("example.com"),
        ("example.com.", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
        ("_dmarc.example.com.", "TXT", "v=DMARC1; p=reject"),
        (k_rsa.owner, "TXT", k_rsa.txt),
        (k_ed.owner, "TXT", k_ed.txt),
    ]
    zone = zone_text("Benchmark zone for crates/dmarc-verifier/benches/data/*.eml", records)

    def bench_msg(tag: str, key: Key, algo: bytes, seed: int, total: int, qid: str) -> bytes:
        def build(body_size: int) -> bytes:
            origin = crlf(header_block([
                ("From", "Example News <news@example.com>"),
                ("To", "reader@example.org"),
                ("Subject", f"Example News digest ({tag})"),
                ("Date", rfc5322_date()),
                ("Message-ID", f"<bench-{tag}.20240610061320@news.example.com>"),
                ("MIME-Version", "1.0"),
                ("Content-Type", "text/plain; charset=us-ascii"),
                ("List-Id", "Example News <news.example.com>"),
            ]) + "\n" + filler_body(seed, body_size))
            trace = crlf(header_block([
                ("Return-Path", "<news@example.com>"),
                received("mail.example.com", "mail.example.com", "192.0.2.10",
                         "mx.example.org", "ESMTPS", qid, "reader@example.org", 3),
            ]))
            return trace + sign(origin, key, algo, SIGNED_HEADERS) + origin
        first = build(total)
        overhead = len(first) - len(first.split(b"\r\n\r\n", 1)[1])
        return build(total - overhead)

    return {"zone": zone, "messages": {
        "rsa-4k.eml": bench_msg("rsa-4k", k_rsa, b"rsa-sha256", 4, 4096, "4XyZ5pqr"),
        "rsa-100k.eml": bench_msg("rsa-100k", k_rsa, b"rsa-sha256", 100, 100 * 1024, "4XyZ6stu"),
        "ed25519-4k.eml": bench_msg("ed25519-4k", k_ed, b"ed25519-sha256", 25519, 4096, "4XyZ7vwx"),
    }}


# --------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------

class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def dkim_results(data_crlf: bytes, zone, minkey: int = 1024) -> list[dict]:
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        txts = zone_txt(zone, name)
        assert len(txts) <= 1, f"{name}: several TXT records"
        return txts[0] if txts else None

    count = sum(1 for k, _ in dkim.DKIM(data_crlf).headers if k.lower() == b"dkim-signature")
    out = []
    for idx in range(count):
        cap = _Capture()
        log = logging.getLogger(f"dkim-check-{idx}")
        log.handlers = [cap]
        log.propagate = False
        log.setLevel(logging.INFO)
        d = dkim.DKIM(data_crlf, logger=log, minkey=minkey)
        try:
            ok = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
            why = "; ".join(cap.messages) or ("" if ok else "signature did not verify")
        except dkim.DKIMException as e:
            ok, why = False, f"{type(e).__name__}: {e}".split(" (got ")[0]
        sig = d.signature_fields
        out.append({
            "ok": ok, "why": why,
            "d": sig.get(b"d", b"").decode(), "s": sig.get(b"s", b"").decode(),
            "a": sig.get(b"a", b"").decode(), "c": sig.get(b"c", b"").decode(),
            "t": sig.get(b"t", b"").decode(), "x": sig.get(b"x"),
            "h": [h.strip().decode() for h in sig.get(b"h", b"").split(b":")],
        })
    return out


def first_received(data_crlf: bytes) -> tuple[str, str]:
    head = data_crlf.split(b"\r\n\r\n", 1)[0].decode()
    head = re.sub(r"\r\n[ \t]+", " ", head)
    for line in head.split("\r\n"):
        if line.lower().startswith("received:"):
            m = re.match(r"Received: from (\S+) \((\S+) \[([0-9A-Fa-f.:]+)\]\)", line)
            assert m, line
            return m.group(1), m.group(3)
    raise AssertionError("no Received header")


def header_value(data_crlf: bytes, name: str) -> str:
    head = data_crlf.split(b"\r\n\r\n", 1)[0].decode()
    head = re.sub(r"\r\n[ \t]+", " ", head)
    vals = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
            if l.lower().startswith(name.lower() + ":")]
    assert len(vals) == 1, (name, vals)
    return vals[0]


def addr_domain(value: str) -> str:
    m = re.search(r"<([^<>@\s]+@[^<>\s]+)>", value) or re.search(r"(\S+@\S+)", value)
    return m.group(1).rsplit("@", 1)[1].lower()


def org_domain(domain: str) -> str:
    # Only com/org/net are used: their registrable domain is the last two labels.
    labels = domain.lower().rstrip(".").split(".")
    assert labels[-1] in ("com", "org", "net"), domain
    return ".".join(labels[-2:])


def spf_ip4_only(zone, domain: str, ip: str) -> str:
    recs = [t.decode() for t in zone_txt(zone, domain) if t.lower().startswith(b"v=spf1")]
    if not recs:
        return "none"
    assert len(recs) == 1
    for term in recs[0].split()[1:]:
        if term.startswith("ip4:"):
            if ipaddress.ip_address(ip) in ipaddress.ip_network(term[4:]):
                return "pass"
        elif term == "-all":
            return "fail"
        else:
            raise AssertionError(f"mini SPF evaluator cannot handle {term!r}")
    return "neutral"


def dmarc_eval(zone, from_dom: str, spf: str, mfrom_dom: str, sigs: list[dict]) -> tuple[str, str, str]:
    """(dmarc result, disposition, policy source) with relaxed alignment."""
    def record(name):
        r = [t.decode() for t in zone_txt(zone, "_dmarc." + name) if t.startswith(b"v=DMARC1")]
        return dict(p.strip().split("=", 1) for p in r[0].split(";") if p.strip()) if r else None
    rec, src, sub = record(from_dom), from_dom, False
    if rec is None and org_domain(from_dom) != from_dom:
        rec, src, sub = record(org_domain(from_dom)), org_domain(from_dom), True
    if rec is None:
        return "none", "none", "-"
    assert rec.get("adkim", "r") == "r" and rec.get("aspf", "r") == "r"
    org = org_domain(from_dom)
    aligned = (spf == "pass" and org_domain(mfrom_dom) == org) or any(
        s["ok"] and org_domain(s["d"]) == org for s in sigs)
    policy = rec.get("sp", rec["p"]) if sub else rec["p"]
    return ("pass", "none", src) if aligned else ("fail", policy, src + (" sp=" if sub else " p=") + policy)


# Expected results.  None = report only.
TEST_EXPECT = {
    "dkim-pass-rsa.eml": [True],
    "dkim-pass-ed25519.eml": [True],
    "dkim-sub.eml": [True],
    "dkim-third-party.eml": [True],
    "dkim-rsa-sha1.eml": [None],
    "dkim-weak-key.eml": [None],
    "dkim-1024.eml": [True],
    "dkim-body-tampered.eml": [False],
    "dkim-two-sigs.eml": [True, False],
    "dkim-pass-lf.eml": [True],
}
DEMO_EXPECT = {  # file: (dkim, spf, dmarc, disposition)
    "newsletter.eml": ([True], "pass", "pass", "none"),
    "forged.eml": ([], "fail", "fail", "reject"),
    "forwarded.eml": ([True], "fail", "pass", "none"),
    "subdomain.eml": ([], "none", "fail", "quarantine"),
}
BENCH_EXPECT = {"rsa-4k.eml": [True], "rsa-100k.eml": [True], "ed25519-4k.eml": [True]}
LF_FILES = {"dkim-pass-lf.eml"} | set(DEMO_EXPECT)


def self_check() -> bool:
    failures: list[str] = []
    rows: list[tuple] = []

    def expect(cond: bool, what: str):
        if not cond:
            failures.append(what)

    sets = [
        (DEMO_DIR, "demo.zone", DEMO_EXPECT),
        (TEST_DIR, "signed.zone", TEST_EXPECT),
        (BENCH_DIR, "bench.zone", BENCH_EXPECT),
    ]
    for directory, zone_name, expectations in sets:
        zone_src = (directory / zone_name).read_text(encoding="ascii")
        zone = parse_zone(zone_src)
        expect(zone_src.startswith("$TTL 300\n"), f"{zone_name}: must start with $TTL 300")
        for (owner, rtype), rds in zone.items():
            if rtype == "TXT":
                expect(len(rds) == 1, f"{zone_name}: {owner} has {len(rds)} TXT records")
                if len(rds[0].strings) > 1:
                    expect("._domainkey." in owner, f"{zone_name}: {owner} split but not DKIM")
                    expect(len(b"".join(rds[0].strings)) > 255, f"{zone_name}: {owner} split needlessly")
            if rtype == "NS":
                expect((owner, "SOA") in zone, f"{zone_name}: NS without SOA at {owner} (delegation)")
        for fname, exp in expectations.items():
            raw = (directory / fname).read_bytes()
            rel = (directory / fname).relative_to(REPO)
            if fname in LF_FILES:
                expect(b"\r" not in raw, f"{rel}: expected LF line endings")
                data = raw.replace(b"\n", b"\r\n")
            else:
                expect(raw.count(b"\n") == raw.count(b"\r\n") and b"\r\n" in raw,
                       f"{rel}: expected CRLF line endings")
                data = raw
            expect(b"PRIVATE KEY" not in raw, f"{rel}: contains a private key")
            dkim_exp = exp[0] if isinstance(exp, tuple) else exp
            res = dkim_results(data, zone)
            expect(len(res) == len(dkim_exp), f"{rel}: {len(res)} signatures, expected {len(dkim_exp)}")
            if fname in LF_FILES and res:
                # dkimpy also reads LF input directly; must agree.
                direct = dkim_results(raw, zone)
                expect([r["ok"] for r in direct] == [r["ok"] for r in res],
                       f"{rel}: LF and CRLF forms disagree")
            for i, (r, want) in enumerate(zip(res, dkim_exp)):
                expect(r["c"] == "relaxed/relaxed", f"{rel}#{i}: c={r['c']}")
                expect(r["t"] == str(SIG_TIME), f"{rel}#{i}: t={r['t']}")
                expect(r["x"] is None, f"{rel}#{i}: has x=")
                expect(all(h in r["h"] for h in SIGNED_HEADERS[:5]), f"{rel}#{i}: h={r['h']}")
                present = {l.split(":", 1)[0].lower() for l in
                           data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
                           if l and l[0] not in " \t"}
                expect(all(re.fullmatch(r"[a-z-]+", h) and h in present for h in r["h"]),
                       f"{rel}#{i}: h= names not all present headers: {r['h']}")
                note = r["why"]
                if fname == "dkim-weak-key.eml":
                    lax = dkim_results(data, zone, minkey=512)[i]
                    note = (f"minkey=1024: {r['why'] or r['ok']}; "
                            f"minkey=512: {'crypto-valid' if lax['ok'] else lax['why']}")
                if want is not None:
                    expect(r["ok"] == want, f"{rel}#{i}: dkimpy says {r['ok']}, expected {want} ({r['why']})")
                rows.append((str(rel), i, r["d"], r["s"], r["a"],
                             {True: "pass", False: "fail", None: "(report)"}[want],
                             "pass" if r["ok"] else "fail", note))
            if not res:
                rows.append((str(rel), "-", "-", "-", "-", "none", "none", "unsigned"))
            if isinstance(exp, tuple) or directory == BENCH_DIR:
                helo, ip = first_received(data)
                mfrom = addr_domain(header_value(data, "Return-Path"))
                from_dom = addr_domain(header_value(data, "From"))
                spf = spf_ip4_only(zone, mfrom, ip)
                dmarc_res, disp, src = dmarc_eval(zone, from_dom, spf, mfrom, res)
                want = exp[1:] if isinstance(exp, tuple) else ("pass", "pass", "none")
                got = (spf, dmarc_res, disp)
                expect(got == tuple(want), f"{rel}: SPF/DMARC {got}, expected {tuple(want)}")
                rows.append((str(rel), "", "", "", "", "", "",
                             f"ip={ip} helo={helo} spf({mfrom})={spf} dmarc={dmarc_res} "
                             f"({src}) disposition={disp}"))
            size = len(raw)
            if directory == DEMO_DIR:
                expect(1024 <= size <= 3 * 1024, f"{rel}: {size} bytes, not 1-3 KiB")

    for d in (DEMO_DIR, TEST_DIR, BENCH_DIR):
        for f in d.iterdir():
            expect(b"PRIVATE KEY" not in f.read_bytes(), f"{f.relative_to(REPO)}: contains a private key")

    widths = [max(len(str(r[c])) for r in rows + [HEAD]) for c in range(7)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*HEAD, "detail"))
    print(fmt.format(*("-" * w for w in widths), "------"))
    for r in rows:
        print(fmt.format(*r))
    print()
    for d in (DEMO_DIR, TEST_DIR, BENCH_DIR):
        for p in sorted(d.iterdir()):
            print(f"  {p.stat().st_size:>7}  {p.relative_to(REPO)}")
    print()
    if failures:
        print("SELF-CHECK FAILED:")
        for f in failures:
            print("  - " + f)
        return False
    print("self-check: all expectations met")
    return True


HEAD = ("file", "sig", "d=", "s=", "a=", "expected", "dkimpy")


def main() -> int:
    if "--check" not in sys.argv[1:]:
        outputs = [
            (DEMO_DIR, "demo.zone", build_demo(), True),
            (TEST_DIR, "signed.zone", build_tests(), False),
            (BENCH_DIR, "bench.zone", build_bench(), False),
        ]
        for directory, zone_name, built, lf in outputs:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / zone_name).write_text(built["zone"], encoding="ascii", newline="\n")
            for fname, data in built["messages"].items():
                assert b"PRIVATE KEY" not in data
                if lf and b"\r\n" in data:
                    data = to_lf(data)
                (directory / fname).write_bytes(data)
        del outputs  # the private keys go with it
    return 0 if self_check() else 1


if __name__ == "__main__":
    sys.exit(main())
