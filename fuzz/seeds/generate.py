#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/.

The seeds are our own: the repository's example messages and zones, plus
a few hand-written values. Each file name is the SHA-1 of its content, as
libFuzzer names corpus files. Re-run after changing this script:

    python3 fuzz/seeds/generate.py
"""

import hashlib
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = HERE / target
    folder.mkdir(exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def read(path):
    return (REPO / path).read_bytes()


FROMS = [
    b'"ceo@bank.example" <x@Attacker.Example.>',
    b"a@example.com, b@example.org",
    b"Group: a@example.com, (comment) b@sub.example.com;",
    b"=?utf-8?q?Jo=40hn?= <j@example.com>",
    b"user@b\xc3\xbccher.example",
    b"<@route.example,@r2.example:u@example.com>",
    b"Undisclosed recipients:;",
    b"a@example.com (nested (comment) here)",
    b'"quoted \\" name" <q@example.net>',
    b"no-domain",
    b"<unterminated@example.com",
]


def author_domains():
    for value in FROMS:
        write("author_domains", b"\x04" + value)
    write("author_domains", b"\x04" + FROMS[0] + b"\x00" + FROMS[1])


RECORDS = [
    "v=DMARC1; p=reject; sp=quarantine; np=reject; pct=50; rua=mailto:d@example.com; adkim=s; aspf=r; fo=1:d:s; ri=3600",
    "v=DMARC1; p=none; rua=mailto:a@example.com!10m,mailto:b@example.org; ruf=mailto:f@example.com",
    "v=DMARC1; p=bogus; rua=mailto:x@example.org,https://bad",
    "v=DMARC1; p=quarantine; t=y; psd=n",
    "V = DMARC1 ; P = Reject ;",
    "v=DMARC1",
]


def dmarc_record():
    for record in RECORDS:
        write("dmarc_record", record)


AUTH_RESULTS = [
    "mx.example.org 1; (comment) spf=pass (ok) smtp.mailfrom=user@example.net;\n\tdkim/1=fail reason=\"bad sig\" header.d=example.com header.b=\"ab+/cd\";\n\tdmarc=pass header.from=example.com policy.dmarc=reject",
    "mx.example.net; none",
    " mx.example.net ;;; garbage ((",
    "\"mx.example.net\"; dmarc=pass",
    "(c) mx.b\u00fccher.example; dkim=pass header.i=@example.com",
]


def auth_results():
    for value in AUTH_RESULTS:
        write("auth_results", b"\x00" + value.encode())
    write("auth_results", b"\x01\x00example.com\x00sel\x00ab+/cdEF\x00bad sig\x00multiple-from")
    write("auth_results", b"\x01\x00x; dmarc=pass\x00a\"b\\c\x00(c)\x00line\r\nX-Injected: 1\x00")


def zone():
    write("zone", b"\x00" + read("crates/dmarc-verifier/tests/data/signed.zone"))
    write("zone", b"\x00" + read("examples/data/demo.zone"))
    write(
        "zone",
        b"\x01$TTL 60\n@ IN SOA ns hostmaster 1 2 3 4 5\n*.w IN TXT \"wild\"\n"
        b"a IN CNAME b\nb IN CNAME a\nc IN A 192.0.2.1\nc IN AAAA 2001:db8::1\n"
        b"c IN MX 10 c\n_dmarc IN TXT ( \"v=DMARC1; \" \"p=none\" )\n",
    )


SPF = [
    (0, b"v=spf1 ip4:192.0.2.0/24 -all"),
    (1, b"v=spf1 ip6:2001:db8::/32 a mx ptr ~all"),
    (2, b"v=spf1 include:inc.example.com -all exp=exp.example.com\xffv=spf1 a:%{d} ?all"),
    (4, b"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=inc.example.com\xffv=spf1 ptr:%{p} -all"),
    (5, b"v=spf1 a/24//64 mx:example.com/26 -ip4:198.51.100.0/24 ?all"),
    (7, b"v=spf1 -all exp=exp.example.com"),
    (8, b"v=spf1 moo.cow-far_out=man:dog/cat default=+ ip4:192.0.2.1 ~all"),
    (12, b"v=spf1 include:inc.example.com\xffv=spf1 include:example.com"),
]


def spf():
    for first, text in SPF:
        write("spf", bytes([first]) + text)


def verify():
    for path in sorted((REPO / "examples/data").glob("*.eml")):
        write("verify", b"\x00" + path.read_bytes())
    for path in sorted((REPO / "crates/dmarc-verifier/tests/data").glob("*.eml")):
        write("verify", b"\x31" + path.read_bytes())
    write("verify", b"\x00From: a@example.org\r\nFrom: b@example.com\r\n\r\nx\r\n")


def packet(command, payload):
    return struct.pack(">I", len(payload) + 1) + command + payload


def cstr(*parts):
    return b"".join(p + b"\x00" for p in parts)


def session_packets(mail, client=b"198.51.100.200"):
    """The packets of one message after negotiation: (command, payload)."""
    head, _, body = mail.replace(b"\r\n", b"\n").partition(b"\n\n")
    out = [
        (b"D", b"C" + cstr(b"j", b"mx.fuzz.example", b"{client_addr}", client)),
        (b"C", cstr(b"unknown") + b"4" + struct.pack(">H", 40000) + cstr(client)),
        (b"H", cstr(b"unknown.example.net")),
        (b"D", b"M" + cstr(b"{auth_authen}", b"")),
        (b"M", cstr(b"<ceo@example.com>")),
        (b"R", cstr(b"<rcpt@example.net>")),
    ]
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        elif b":" in line:
            fields.append(line)
    for field in fields:
        name, _, value = field.partition(b":")
        if name.lower() == b"return-path":
            continue
        out.append((b"L", cstr(name, value)))
    out.append((b"N", b""))
    body = body.replace(b"\n", b"\r\n")
    for i in range(0, len(body), 200):
        out.append((b"B", body[i : i + 200]))
    out.append((b"D", b"E" + cstr(b"i", b"4XFUZZ")))
    out.append((b"E", b""))
    return out


def negotiation():
    return packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))


def milter_session():
    forged = read("examples/data/forged.eml")
    newsletter = read("examples/data/newsletter.eml")
    # Raw (mode 0): the exact bytes of a whole session.
    raw = negotiation()
    for command, payload in session_packets(forged):
        raw += packet(command, payload)
    raw += packet(b"Q", b"")
    write("milter_session", b"\x00" + raw)
    # Framed (mode 3: negotiation added): [command][length][payload].
    for mail, client in ((forged, b"198.51.100.200"), (newsletter, b"192.0.2.10")):
        framed = b""
        for command, payload in session_packets(mail, client):
            if len(payload) > 255:
                continue
            framed += command + bytes([len(payload)]) + payload
        framed += b"A\x00" + b"K\x00"
        write("milter_session", b"\x03" + framed)
    # Two messages on one connection, the second aborted.
    framed = b""
    for mail in (forged, forged):
        for command, payload in session_packets(mail)[3:-1]:
            if len(payload) <= 255:
                framed += command + bytes([len(payload)]) + payload
        framed += b"A\x00"
    write("milter_session", b"\x03" + framed)


ARC_SET = (
    b"ARC-Seal: i={i}; a=ed25519-sha256; cv={cv}; d=fwd.example; s=s; t=1718000000;\r\n"
    b" b=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    b"ARC-Message-Signature: i={i}; a=ed25519-sha256; c=relaxed/relaxed; d=fwd.example; s=s;\r\n"
    b" h=from:to:subject:date; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    b" b=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    b"ARC-Authentication-Results: i={i}; mx.fwd.example;\r\n"
    b" dmarc=pass header.from=example.com\r\n"
)


def arc_set(i, cv):
    return ARC_SET.replace(b"{i}", str(i).encode()).replace(b"{cv}", cv)


def arc():
    """Mode byte, then: fields on top (0), the ARC fields (1), header
    edits as (offset u16 LE, byte) (2), body appended (3)."""
    write("arc", b"\x00" + arc_set(3, b"pass"))
    write("arc", b"\x00" + arc_set(1, b"none"))
    write("arc", b"\x00" + arc_set(51, b"pass"))
    write("arc", b"\x00ARC-Seal: i=2; cv=fail; a=rsa-sha256; d=x.example; s=s; b=AAAA\r\n")
    write("arc", b"\x00" + b"ARC-Seal : i=1\r\n" * 20)
    write("arc", b"\x01" + arc_set(1, b"none"))
    write("arc", b"\x01" + arc_set(1, b"none") + arc_set(2, b"pass"))
    write("arc", b"\x01" + arc_set(2, b"pass"))
    write("arc", b"\x01" + arc_set(1, b"none") + arc_set(1, b"none"))
    write("arc", b"\x01")
    for offset, byte in [(10, b"9"), (40, b"X"), (300, b"A"), (700, b"2"), (1200, b";")]:
        write("arc", b"\x02" + struct.pack("<H", offset) + byte)
    write("arc", b"\x03appended after the seals\r\n")
    write("arc", b"\x03")


if __name__ == "__main__":
    author_domains()
    dmarc_record()
    auth_results()
    zone()
    spf()
    verify()
    milter_session()
    arc()
    for folder in sorted(p for p in HERE.iterdir() if p.is_dir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
