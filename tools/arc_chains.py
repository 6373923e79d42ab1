#!/usr/bin/env python3
"""ARC chains made by an independent implementation (dkimpy's arc_sign), for
the tests of issue 13, and dkimpy's arc_verify of a chain we sealed.

    python3 tools/arc_chains.py make OUTDIR
    python3 tools/arc_chains.py verify ZONE MESSAGE

`make` makes fresh RSA-2048 key pairs (kept in this process's memory only:
the private halves are never written anywhere), writes `OUTDIR/arc.zone`
(the public keys, SPF and DMARC records), one `OUTDIR/<scenario>.eml` per
scenario below (CRLF), and `OUTDIR/scenarios.txt` (one scenario name a
line). The tests read them right away and remove the directory.

`verify` runs dkimpy's arc_verify on MESSAGE with the TXT records of ZONE
(no other DNS) and prints one JSON object: {"cv": "pass" | "fail" | "none",
"reason": ..., "instances": [{"instance": N, "ams": bool, "as": bool,
"d": sealer}], newest first}.

Domains (zone names are absolute):

    example.com            the Author Domain: p=reject, DKIM s1, SPF allows
                           only 192.0.2.1 (so mail relayed by a list or a
                           forwarder from 198.51.100.7 fails SPF)
    lists.example.org      the mailing list (ARC and DKIM key "arc"),
                           List-Id <dev.lists.example.org>
    forwarder.example.net  a later hop (ARC and DKIM key "fwd")
    attacker.example       someone else sealing (key "evil")
    nodmarc.example        a domain without a DMARC record (DKIM s1)

Scenarios (all From: user@example.com unless said otherwise):

    original                 signed by example.com, untouched: DMARC pass
    list-trusted             the list rewrote Subject and body (the DKIM
                             body hash fails), its A-R said dmarc=pass for
                             example.com, it sealed i=1
    list-aar-dkim            same, its A-R only said dkim=pass
                             header.d=example.com (aligned), no dmarc result
    list-then-forwarded      list-trusted, then forwarder.example.net sealed
                             i=2 without changing the message
    list-then-rewritten      list-trusted, then forwarder.example.net
                             rewrote the body and sealed i=2 (the chain
                             passes, the list's AMS no longer verifies)
    list-aar-fail            the list's A-R said dkim=pass (aligned) but
                             dmarc=fail for example.com, it sealed i=1
    list-broken-after-seal   list-trusted, then the body changed (no seal)
    list-expired-then-sealed list-trusted, but the list's seal and AMS
                             expired in 2017 (x=), then attacker.example
                             sealed i=2 without changing the message
    list-extra-subject       list-trusted with a second Subject field added
                             on top after the seal (the AMS signs one, from
                             the bottom: it still verifies)
    cv-fail                  list-trusted, then forwarder.example.net found
                             the chain failed and sealed i=2 with cv=fail
    fifty                    list-trusted plus 49 forwarder seals: 50 sets
    fifty-one                fifty plus a 51st set (copied, i=51)
    forged-aar               attacker.example sealed i=1 with an A-R whose
                             authserv-id is lists.example.org and says
                             dmarc=pass for example.com
    list-dkim                the list rewrote the message and DKIM-signed it
                             as lists.example.org (List-Id aligned), no ARC
    list-id-alone            the list rewrote it, List-Id, nothing else
    forwarder-dkim           forwarder.example.net DKIM-signed the modified
                             message, no List-Id, no ARC
    nodmarc-forwarded        From: user@nodmarc.example, modified by the list,
                             sealed by the list (DMARC none)

    pip install dkimpy authres cryptography dnspython
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

try:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError as e:  # pragma: no cover
    sys.exit(f"missing module ({e}); run: pip install dkimpy authres cryptography dnspython")

#: Headers every signature and seal signs.
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


class Key:
    """An RSA-2048 key pair; the private half lives in memory only."""

    def __init__(self, selector: str, domain: str) -> None:
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.selector = selector.encode()
        self.domain = domain.encode()
        self._pem = priv.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
        spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        self.p = base64.b64encode(spki).decode()

    def zone_line(self) -> str:
        # One TXT record of several strings (each at most 255 octets).
        record = f"v=DKIM1; k=rsa; p={self.p}"
        strings = " ".join(f'"{record[i:i + 250]}"' for i in range(0, len(record), 250))
        return f"{self.selector.decode()}._domainkey.{self.domain.decode()}. 300 IN TXT {strings}"

    def dkim(self, message: bytes) -> bytes:
        return dkim.sign(message, self.selector, self.domain, self._pem,
                         canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED) + message

    def seal(self, message: bytes, srv_id: str, results: str, expired: bool = False) -> bytes:
        """Adds the A-R `srv_id; results` (what this hop saw) and seals;
        `expired`: signed in 2017 with x= 100 s later (dkimpy writes its
        timestamp argument as t=, so the x= tag rides along)."""
        message = f"Authentication-Results: {srv_id}; {results}\r\n".encode() + message
        timestamp = "1500000000; x=1500000100" if expired else None
        arc_set = dkim.arc_sign(message, self.selector, self.domain, self._pem,
                                srv_id.encode(), include_headers=SIGNED, timestamp=timestamp)
        if not arc_set:
            raise SystemExit(f"dkimpy did not seal for {srv_id}")
        return b"".join(arc_set) + message


def original(author: str = "example.com") -> bytes:
    return (f"From: User <user@{author}>\r\n"
            "To: dev@lists.example.org\r\n"
            "Subject: release notes\r\n"
            "Date: Mon, 10 Jun 2024 06:13:20 +0000\r\n"
            f"Message-ID: <notes-1@{author}>\r\n"
            "\r\n"
            "The release is out.\r\n").encode()


def through_list(message: bytes) -> bytes:
    """What a list does: a tag in Subject, a footer, List-Id."""
    message = message.replace(b"Subject: release notes", b"Subject: [dev] release notes")
    return b"List-Id: Developers <dev.lists.example.org>\r\n" + message + b"--\r\ndev mailing list\r\n"


def make(out: Path) -> None:
    author = Key("s1", "example.com")
    nodmarc = Key("s1", "nodmarc.example")
    lists = Key("arc", "lists.example.org")
    fwd = Key("fwd", "forwarder.example.net")
    evil = Key("evil", "attacker.example")
    keys = [author, nodmarc, lists, fwd, evil]

    zone = ["example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 3600 900 604800 300",
            'example.com. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"',
            '_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"',
            'nodmarc.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"',
            'lists.example.org. 300 IN TXT "v=spf1 -all"',
            'forwarder.example.net. 300 IN TXT "v=spf1 -all"']
    zone += [k.zone_line() for k in keys]
    (out / "arc.zone").write_text("\n".join(zone) + "\n")

    saw_pass = ("spf=pass smtp.mailfrom=example.com; "
                "dkim=pass header.d=example.com header.s=s1; "
                "dmarc=pass header.from=example.com")
    signed = author.dkim(original())
    listed = through_list(signed)
    trusted = lists.seal(listed, "lists.example.org", saw_pass)
    scenarios: dict[str, bytes] = {
        "original": signed,
        "list-trusted": trusted,
        "list-aar-dkim": lists.seal(listed, "lists.example.org",
                                    "dkim=pass header.d=example.com header.s=s1"),
        "list-then-forwarded": fwd.seal(trusted, "forwarder.example.net",
                                        "arc=pass; dmarc=fail header.from=example.com"),
        "list-then-rewritten": fwd.seal(trusted + b"(scanned)\r\n", "forwarder.example.net",
                                        "arc=pass; dmarc=fail header.from=example.com"),
        "list-aar-fail": lists.seal(listed, "lists.example.org",
                                    "dkim=pass header.d=example.com header.s=s1; "
                                    "dmarc=fail header.from=example.com"),
        "list-broken-after-seal": trusted + b"(changed after the seal)\r\n",
        "list-expired-then-sealed": evil.seal(
            lists.seal(listed, "lists.example.org", saw_pass, expired=True),
            "attacker.example", "arc=pass"),
        "list-extra-subject": b"Subject: URGENT wire transfer\r\n" + trusted,
        "cv-fail": fwd.seal(trusted, "forwarder.example.net",
                            "arc=fail; dmarc=fail header.from=example.com"),
        "forged-aar": evil.seal(listed, "lists.example.org", saw_pass),
        "list-dkim": lists.dkim(listed),
        "list-id-alone": listed,
        "forwarder-dkim": fwd.dkim(listed.split(b"\r\n", 1)[1]),
        "nodmarc-forwarded": lists.seal(through_list(nodmarc.dkim(original("nodmarc.example"))),
                                        "lists.example.org",
                                        "dkim=pass header.d=nodmarc.example header.s=s1"),
    }
    fifty = trusted
    for hop in range(2, 51):
        # One A-R per hop: dkimpy reads cv= from the one of its authserv-id.
        fifty = fwd.seal(fifty, f"mx{hop}.forwarder.example.net", "arc=pass")
    scenarios["fifty"] = fifty
    scenarios["fifty-one"] = fifty_one(fifty)
    for name, message in scenarios.items():
        (out / f"{name}.eml").write_bytes(message)
    (out / "scenarios.txt").write_text("\n".join(scenarios) + "\n")


def fifty_one(message: bytes) -> bytes:
    """A copy of the newest set (i=50) numbered 51, on top."""
    head, _, _ = message.partition(b"\r\n\r\n")
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    newest = [f for f in fields[:3] if f.lower().startswith(b"arc-")]
    assert len(newest) == 3, newest
    copies = [f.replace(b"i=50;", b"i=51;", 1) + b"\r\n" for f in newest]
    return b"".join(copies) + message


def zone_txt(zone: Path) -> dict[bytes, bytes]:
    """TXT records of our zone files: name (no trailing dot) -> text."""
    records: dict[bytes, bytes] = {}
    for line in zone.read_text().splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[3] == "TXT":
            strings = [s for s in parts[4].split('"') if s.strip()]
            records[parts[0].rstrip(".").lower().encode()] = "".join(strings).encode()
    return records


def verify(zone: Path, message: Path) -> None:
    records = zone_txt(zone)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.rstrip(b".").lower())

    cv, results, reason = dkim.arc_verify(message.read_bytes(), dnsfunc=dnsfunc)
    print(json.dumps({
        "cv": cv.decode() if cv else None,
        "reason": reason,
        "instances": [{"instance": r["instance"], "ams": bool(r["ams-valid"]),
                       "as": bool(r["as-valid"]), "d": r["as-domain"].decode()}
                      for r in results],
    }))


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "make":
        out = Path(argv[2])
        out.mkdir(parents=True, exist_ok=True)
        make(out)
    elif len(argv) == 4 and argv[1] == "verify":
        verify(Path(argv[2]), Path(argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
