#!/usr/bin/env python3
"""Independent check of docs/PROTOCOL.md against proto/testdata/vectors/v1.json and
proto/testdata/vectors/witness-v1.json.

Written from docs/PROTOCOL.md alone, with the Python 3.11 standard library only. It re-derives
everything the vectors file claims: public keys from seeds, recovery commitments, the canonical
encoding of each entry from its JSON form, the signing input, the (deterministic Ed25519)
signature, the entry hash, chain validity, every consent decision, fork-proof validity, and the
rejection of every invalid encoding. It also checks the Ed25519 validity rule against the
"Taming the many EdDSAs" cases, the vocabulary copy in PROTOCOL.md against proto/vocab/, and a
set of decoder rejection rules on mutated encodings. For witnessing (section 17) it re-derives the
witness vectors from their inputs: log and cosigner key IDs and vkeys, Merkle roots and the
consistency proof, signed checkpoints, the cosigned message and cosignature, the add-checkpoint
body and the witness's checks, the AddCheckpoint and Witness sync messages, the split-view proof
and its id; and it checks that section 17.10 shows those values.

Prints one line per check and ends with "N passed, M failed"; exits 1 if anything failed.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "PROTOCOL.md")
VECTORS = os.path.join(ROOT, "proto", "testdata", "vectors", "v1.json")
WITNESS_VECTORS = os.path.join(ROOT, "proto", "testdata", "vectors", "witness-v1.json")
SPECCHECK = os.path.join(ROOT, "proto", "testdata", "ed25519-speccheck", "cases.json")
VOCAB_FILE = os.path.join(ROOT, "proto", "vocab", "vocab-v1.tsv")
TCF_FILE = os.path.join(ROOT, "proto", "vocab", "tcf-v2.2.tsv")

# Accepted "Taming the many EdDSAs" case indices, as stated in PROTOCOL.md.
SPECCHECK_ACCEPTED = [3, 4, 5]


# ---------------------------------------------------------------------------------------------
# Ed25519, in the style of RFC 8032 section 6, with the validity rule of PROTOCOL.md.
# ---------------------------------------------------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493


def sha512(b):
    return hashlib.sha512(b).digest()


def sha256(b):
    return hashlib.sha256(b).digest()


def inv(x):
    return pow(x, P - 2, P)


D = -121665 * inv(121666) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def point_add(p1, p2):
    a = (p1[1] - p1[0]) * (p2[1] - p2[0]) % P
    b = (p1[1] + p1[0]) * (p2[1] + p2[0]) % P
    c = 2 * p1[3] * p2[3] * D % P
    d = 2 * p1[2] * p2[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_neg(pt):
    return (-pt[0] % P, pt[1], pt[2], -pt[3] % P)


def point_mul(s, pt):
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = point_add(q, pt)
        pt = point_add(pt, pt)
        s >>= 1
    return q


def point_equal(p1, p2):
    return (p1[0] * p2[2] - p2[0] * p1[2]) % P == 0 and (p1[1] * p2[2] - p2[1] * p1[2]) % P == 0


def is_identity(pt):
    return point_equal(pt, IDENTITY)


def recover_x(y, sign):
    if y >= P:
        return None
    # Reduced mod p before the zero test (RFC 8032's reference code omits the reduction and so
    # accepts y = p - 1 with the sign bit set, which is not canonical).
    x2 = (y * y - 1) * inv(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


G_Y = 4 * inv(5) % P
G_X = recover_x(G_Y, 0)
G = (G_X, G_Y, 1, G_X * G_Y % P)


def point_compress(pt):
    zi = inv(pt[2])
    x, y = pt[0] * zi % P, pt[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_decompress(b):
    """Strict RFC 8032 5.1.3 decoding: None unless b is the canonical encoding of a curve point."""
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def secret_expand(seed):
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed):
    a, _ = secret_expand(seed)
    return point_compress(point_mul(a, G))


def sign(seed, msg):
    a, prefix = secret_expand(seed)
    pub = point_compress(point_mul(a, G))
    r = int.from_bytes(sha512(prefix + msg), "little") % L
    rb = point_compress(point_mul(r, G))
    k = int.from_bytes(sha512(rb + pub + msg), "little") % L
    s = (r + k * a) % L
    return rb + s.to_bytes(32, "little")


def small_order(pt):
    return is_identity(point_mul(8, pt))


def verify(pub, msg, sig):
    """The consent-ledger rule: None if valid, else the reason."""
    if len(pub) != 32 or len(sig) != 64:
        return "bad length"
    rb, sb = sig[:32], sig[32:]
    s = int.from_bytes(sb, "little")
    if s >= L:
        return "S >= L"
    a = point_decompress(pub)
    if a is None:
        return "A is not a canonical point encoding"
    if small_order(a):
        return "A has small order"
    r = point_decompress(rb)
    if r is None:
        return "R is not a canonical point encoding"
    if small_order(r):
        return "R has small order"
    k = int.from_bytes(sha512(rb + pub + msg), "little") % L
    x = point_add(point_mul(s, G), point_neg(point_add(r, point_mul(k, a))))
    if not is_identity(point_mul(8, x)):
        return "equation fails"
    return None


# ---------------------------------------------------------------------------------------------
# Vocabulary (parsed from the copy in PROTOCOL.md).
# ---------------------------------------------------------------------------------------------


def doc_block(doc, name):
    """The fenced block that follows the marker comment <!-- file: NAME --> in PROTOCOL.md."""
    m = re.search(r"<!-- file: " + re.escape(name) + r" -->\n```[a-z]*\n(.*?)```\n", doc, re.S)
    if not m:
        raise SystemExit(f"PROTOCOL.md has no block for {name}")
    return m.group(1)


class Vocab:
    def __init__(self, text, tcf_text):
        self.kind = {}
        broader = {}
        for line in text.split("\n"):
            if line.startswith("#") or line.strip() == "":
                continue
            kind, code, br = line.split("\t")
            assert kind in ("purpose", "legal-basis", "data"), kind
            assert code not in self.kind, code
            self.kind[code] = kind
            broader[code] = [] if br == "-" else br.split(",")
        self.ancestors = {}
        for code in self.kind:
            seen, stack = set(), list(broader[code])
            while stack:
                b = stack.pop()
                assert self.kind[b] == self.kind[code] and b != code
                if b not in seen:
                    seen.add(b)
                    stack.extend(broader[b])
            self.ancestors[code] = seen
        self.descendants = {c: set() for c in self.kind}
        for code, anc in self.ancestors.items():
            for a in anc:
                self.descendants[a].add(code)
        self.tcf = {}
        for line in tcf_text.split("\n"):
            if line.startswith("#") or line.strip() == "":
                continue
            tid, dpv, name = line.split("\t")
            self.tcf[int(tid)] = ([] if dpv == "-" else dpv.split(","), name)

    def is_(self, code, kind):
        return self.kind.get(code) == kind

    def covers(self, broad, narrow):
        return broad == narrow or broad in self.ancestors.get(narrow, ())


VOCAB = None  # set in main()


# ---------------------------------------------------------------------------------------------
# Entries: the binary form, the JSON form and the form rules.
# ---------------------------------------------------------------------------------------------

VERSION = 1
SIGNATURE_DOMAIN = b"consent-ledger/entry-signature/v1\x00"
HASH_DOMAIN = b"consent-ledger/entry-hash/v1\x00"
RECOVERY_DOMAIN = b"consent-ledger/recovery-key/v1\x00"
MAX_ENTRY_BYTES = 4096
MAX_U53 = 2**53 - 1
MAX_CODES = 16
KINDS = {1: "grant", 2: "withdraw", 3: "refuse", 4: "rotate"}
KIND_BYTES = {v: k for k, v in KINDS.items()}
METHODS = {1: "ui-action", 2: "written", 3: "cli", 4: "api", 5: "browser-signal"}
METHOD_BYTES = {v: k for k, v in METHODS.items()}
ZERO32 = "00" * 32
CONSENT_FIELDS = ["controller", "purposes", "data", "legal_basis", "notice", "valid_until",
                  "jurisdiction", "method", "gpc"]
ROTATE_FIELDS = ["new_key", "next_recovery"]
ALL_FIELDS = ["version", "kind", "subject", "seq", "prev", "issued_at", "signer", "recovery"] \
    + CONSENT_FIELDS + ROTATE_FIELDS + ["signature"]


class Reject(Exception):
    pass


def recovery_commitment(pub):
    return sha256(RECOVERY_DOMAIN + pub)


def entry_hash(encoding):
    return sha256(HASH_DOMAIN + encoding)


# An entry is held as a dict in the JSON form's model: hex strings for keys, hashes and the
# signature; ints for numbers; lists of str for sets; absent optional fields are absent.

UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = b"0123456789"
CODE_ALPHABET = UPPER + UPPER.lower() + DIGITS + b":"
JURISDICTION_ALPHABET = UPPER + DIGITS + b"-"


def visible(s):
    return all(0x21 <= b <= 0x7E for b in s.encode())


def in_alphabet(alphabet):
    return lambda s: all(b in alphabet for b in s.encode())


def check_str(field, s, lo, hi, ok):
    n = len(s.encode())
    if n < lo or n > hi:
        raise Reject(f"{field}: length {n} not in {lo}..={hi}")
    if not ok(s):
        raise Reject(f"{field}: character outside the alphabet")


def check_code(field, code, kind):
    check_str(field, code, 3, 64, in_alphabet(CODE_ALPHABET))
    if not VOCAB.is_(code, kind):
        raise Reject(f"{field}: unknown code {code}")


def check_codes(field, codes, kind):
    if len(codes) > MAX_CODES:
        raise Reject(f"{field}: {len(codes)} elements, at most {MAX_CODES}")
    for c in codes:
        check_code(field, c, kind)
    enc = [c.encode() for c in codes]
    if any(enc[i] >= enc[i + 1] for i in range(len(enc) - 1)):
        raise Reject(f"{field}: not sorted by bytes and unique")


def check_form(e):
    """The form rules of PROTOCOL.md, on an entry in the dict model."""
    if not 1 <= e["seq"] <= MAX_U53:
        raise Reject("seq out of range")
    if not 0 <= e["issued_at"] <= MAX_U53:
        raise Reject("issued_at out of range")
    if (e["seq"] == 1) != (e["prev"] == ZERO32):
        raise Reject("prev must be zero at seq 1 and only there")
    if (e["seq"] == 1) != ("recovery" in e):
        raise Reject("recovery must be present at seq 1 and only there")
    if e["kind"] == "rotate":
        if e["seq"] == 1:
            raise Reject("rotate at seq 1")
        return
    if e["kind"] == "grant" and not e["purposes"]:
        raise Reject("a grant needs a purpose")
    check_codes("purposes", e["purposes"], "purpose")
    check_codes("data", e["data"], "data")
    check_code("legal_basis", e["legal_basis"], "legal-basis")
    if "notice" in e:
        check_str("notice.url", e["notice"]["url"], 1, 512, visible)
        check_str("notice.version", e["notice"]["version"], 1, 64, visible)
    if "valid_until" in e:
        if e["kind"] != "grant":
            raise Reject("valid_until only on grants")
        if not 0 <= e["valid_until"] <= MAX_U53:
            raise Reject("valid_until out of range")
        if e["valid_until"] <= e["issued_at"]:
            raise Reject("valid_until must be after issued_at")
    if "jurisdiction" in e:
        check_str("jurisdiction", e["jurisdiction"], 2, 16, in_alphabet(JURISDICTION_ALPHABET))


def str8(s):
    b = s.encode()
    assert len(b) <= 255
    return bytes([len(b)]) + b


def encode_content(e):
    out = bytearray([VERSION, KIND_BYTES[e["kind"]]])
    out += bytes.fromhex(e["subject"])
    out += e["seq"].to_bytes(8, "big")
    out += bytes.fromhex(e["prev"])
    out += e["issued_at"].to_bytes(8, "big")
    out += bytes.fromhex(e["signer"])
    if "recovery" in e:
        out += b"\x01" + bytes.fromhex(e["recovery"])
    else:
        out += b"\x00"
    if e["kind"] == "rotate":
        out += bytes.fromhex(e["new_key"]) + bytes.fromhex(e["next_recovery"])
        return bytes(out)
    out += bytes.fromhex(e["controller"])
    for field in ("purposes", "data"):
        out += bytes([len(e[field])])
        for c in e[field]:
            out += str8(c)
    out += str8(e["legal_basis"])
    if "notice" in e:
        url = e["notice"]["url"].encode()
        out += b"\x01" + len(url).to_bytes(2, "big") + url
        out += bytes.fromhex(e["notice"]["sha256"]) + str8(e["notice"]["version"])
    else:
        out += b"\x00"
    if "valid_until" in e:
        out += b"\x01" + e["valid_until"].to_bytes(8, "big")
    else:
        out += b"\x00"
    if "jurisdiction" in e:
        out += b"\x01" + str8(e["jurisdiction"])
    else:
        out += b"\x00"
    out += bytes([METHOD_BYTES[e["method"]]])
    out += bytes([{None: 0, False: 1, True: 2}[e.get("gpc")]])
    return bytes(out)


def encode_entry(e):
    return encode_content(e) + bytes.fromhex(e["signature"])


def signing_input(e):
    return SIGNATURE_DOMAIN + encode_content(e)


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n, field):
        if self.pos + n > len(self.buf):
            raise Reject(f"input ends inside field {field}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, field):
        return self.take(1, field)[0]

    def u16(self, field):
        return int.from_bytes(self.take(2, field), "big")

    def u64(self, field):
        return int.from_bytes(self.take(8, field), "big")

    def hex32(self, field):
        return self.take(32, field).hex()

    def tag(self, field):
        t = self.u8(field)
        if t not in (0, 1):
            raise Reject(f"{field}: option tag {t}")
        return t == 1

    def string(self, n, hi, field):
        if n > hi:
            raise Reject(f"{field}: length {n} over {hi}")
        b = self.take(n, field)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(f"{field}: not UTF-8") from None

    def str8(self, hi, field):
        return self.string(self.u8(field), hi, field)

    def set(self, field):
        n = self.u8(field)
        if n > MAX_CODES:
            raise Reject(f"{field}: {n} elements, at most {MAX_CODES}")
        return [self.str8(64, field) for _ in range(n)]


def decode_entry(b):
    """Strict decoder: the entry in the dict model, or Reject."""
    if len(b) > MAX_ENTRY_BYTES:
        raise Reject(f"entry is {len(b)} bytes")
    r = Reader(b)
    v = r.u8("version")
    if v != VERSION:
        raise Reject(f"unknown entry version {v}")
    kb = r.u8("kind")
    if kb not in KINDS:
        raise Reject(f"unknown entry kind {kb}")
    e = {"version": 1, "kind": KINDS[kb]}
    e["subject"] = r.hex32("subject")
    e["seq"] = r.u64("seq")
    e["prev"] = r.hex32("prev")
    e["issued_at"] = r.u64("issued_at")
    e["signer"] = r.hex32("signer")
    if r.tag("recovery"):
        e["recovery"] = r.hex32("recovery")
    if e["kind"] == "rotate":
        e["new_key"] = r.hex32("new_key")
        e["next_recovery"] = r.hex32("next_recovery")
    else:
        e["controller"] = r.hex32("controller")
        e["purposes"] = r.set("purposes")
        e["data"] = r.set("data")
        e["legal_basis"] = r.str8(64, "legal_basis")
        if r.tag("notice"):
            url = r.string(r.u16("notice.url"), 512, "notice.url")
            sha = r.hex32("notice.sha256")
            ver = r.str8(64, "notice.version")
            e["notice"] = {"url": url, "sha256": sha, "version": ver}
        if r.tag("valid_until"):
            e["valid_until"] = r.u64("valid_until")
        if r.tag("jurisdiction"):
            e["jurisdiction"] = r.str8(16, "jurisdiction")
        m = r.u8("method")
        if m not in METHODS:
            raise Reject(f"unknown indication method {m}")
        e["method"] = METHODS[m]
        g = r.u8("gpc")
        if g > 2:
            raise Reject(f"invalid gpc value {g}")
        if g:
            e["gpc"] = g == 2
    e["signature"] = r.take(64, "signature").hex()
    if r.pos != len(b):
        raise Reject(f"{len(b) - r.pos} trailing bytes after the entry")
    check_form(e)
    return e


def parse_hex(v, n, field):
    if not isinstance(v, str) or len(v) != 2 * n or not re.fullmatch(r"[0-9a-f]*", v):
        raise Reject(f"{field}: not {2 * n} lowercase hex digits")
    return v


def parse_uint(v, field, hi=2**64 - 1):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > hi:
        raise Reject(f"{field}: not an unsigned integer")
    return v


def parse_string(v, field):
    if not isinstance(v, str):
        raise Reject(f"{field}: not a string")
    return v


def entry_from_json(obj):
    """The JSON form (a parsed JSON object) to the dict model, with every JSON and form rule."""
    if not isinstance(obj, dict):
        raise Reject("not an object")
    for k in obj:
        if k not in ALL_FIELDS:
            raise Reject(f"unknown field {k}")
    # A null member of an optional field counts as absent.
    j = {k: v for k, v in obj.items() if not (v is None and k in CONSENT_FIELDS + ROTATE_FIELDS
                                                 + ["recovery"])}
    for k in ("version", "kind", "subject", "seq", "prev", "issued_at", "signer", "signature"):
        if k not in j:
            raise Reject(f"missing field {k}")
    e = {}
    e["version"] = parse_uint(j["version"], "version", 255)
    if e["version"] != VERSION:
        raise Reject(f"unknown entry version {e['version']}")
    e["kind"] = parse_string(j["kind"], "kind")
    if e["kind"] not in KIND_BYTES:
        raise Reject(f"unknown kind {e['kind']}")
    e["subject"] = parse_hex(j["subject"], 32, "subject")
    e["seq"] = parse_uint(j["seq"], "seq")
    e["prev"] = parse_hex(j["prev"], 32, "prev")
    e["issued_at"] = parse_uint(j["issued_at"], "issued_at")
    e["signer"] = parse_hex(j["signer"], 32, "signer")
    if "recovery" in j:
        e["recovery"] = parse_hex(j["recovery"], 32, "recovery")
    if e["kind"] == "rotate":
        for k in CONSENT_FIELDS:
            if k in j:
                raise Reject(f"a rotate entry must not have field {k}")
        for k in ROTATE_FIELDS:
            if k not in j:
                raise Reject(f"a rotate entry needs field {k}")
            e[k] = parse_hex(j[k], 32, k)
    else:
        for k in ROTATE_FIELDS:
            if k in j:
                raise Reject(f"a {e['kind']} entry must not have field {k}")
        for k in ("controller", "purposes", "data", "legal_basis", "method"):
            if k not in j:
                raise Reject(f"a {e['kind']} entry needs field {k}")
        e["controller"] = parse_hex(j["controller"], 32, "controller")
        for k in ("purposes", "data"):
            if not isinstance(j[k], list):
                raise Reject(f"{k}: not an array")
            e[k] = [parse_string(c, k) for c in j[k]]
        e["legal_basis"] = parse_string(j["legal_basis"], "legal_basis")
        if "notice" in j:
            n = j["notice"]
            if not isinstance(n, dict) or set(n) != {"url", "sha256", "version"}:
                raise Reject("notice: needs exactly url, sha256, version")
            e["notice"] = {"url": parse_string(n["url"], "notice.url"),
                           "sha256": parse_hex(n["sha256"], 32, "notice.sha256"),
                           "version": parse_string(n["version"], "notice.version")}
        if "valid_until" in j:
            e["valid_until"] = parse_uint(j["valid_until"], "valid_until")
        if "jurisdiction" in j:
            e["jurisdiction"] = parse_string(j["jurisdiction"], "jurisdiction")
        e["method"] = parse_string(j["method"], "method")
        if e["method"] not in METHOD_BYTES:
            raise Reject(f"unknown indication method {e['method']}")
        if "gpc" in j:
            if not isinstance(j["gpc"], bool):
                raise Reject("gpc: not a boolean")
            e["gpc"] = j["gpc"]
    e["signature"] = parse_hex(j["signature"], 64, "signature")
    check_form(e)
    return e


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Reject("duplicate member")
    return dict(pairs)


def strict_int(text):
    # JSON integers of the entry form carry no sign: even "-0" is rejected.
    if text.startswith("-"):
        raise Reject(f"negative number {text}")
    return int(text)


def no_constant(text):
    raise Reject(f"not JSON: {text}")


def entry_from_json_text(text):
    """Parses JSON text (duplicate members, signs, fractions and exponents rejected)."""
    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates, parse_int=strict_int,
                         parse_constant=no_constant)
    except ValueError as exc:
        raise Reject(f"not JSON: {exc}") from None
    return entry_from_json(obj)


def entry_to_json(e):
    """The JSON form the reference implementation produces (members in its order)."""
    return {k: e[k] for k in ALL_FIELDS if k in e}


# ---------------------------------------------------------------------------------------------
# Entries, chains, fork proofs.
# ---------------------------------------------------------------------------------------------


def verify_entry(e):
    """None if the entry's signature is valid (and at seq 1 the signer is the subject)."""
    if e["seq"] == 1 and e["signer"] != e["subject"]:
        return "seq 1 not signed by the subject"
    why = verify(bytes.fromhex(e["signer"]), signing_input(e), bytes.fromhex(e["signature"]))
    return None if why is None else f"bad signature: {why}"


class Head:
    def __init__(self, first):
        self.subject = first["subject"]
        self.seq = 1
        self.hash = entry_hash(encode_entry(first)).hex()
        self.issued_at = first["issued_at"]
        self.signing_key = first["subject"]
        self.recovery = first["recovery"]

    def authorised(self, e):
        if e["kind"] == "rotate":
            if recovery_commitment(bytes.fromhex(e["signer"])).hex() != self.recovery:
                return "rotation signer does not match the recovery commitment"
        elif e["signer"] != self.signing_key:
            return f"signed by {e['signer']}, current signing key is {self.signing_key}"
        return None

    def link(self, e):
        if e["subject"] != self.subject:
            return "other subject"
        if e["seq"] != self.seq + 1:
            return f"seq not incremental: expected {self.seq + 1}, found {e['seq']}"
        if e["prev"] != self.hash:
            return "prev is not the previous entry's hash"
        if e["issued_at"] < self.issued_at:
            return "issued_at went back"
        return None

    def advance(self, e):
        self.seq = e["seq"]
        self.hash = entry_hash(encode_entry(e)).hex()
        self.issued_at = e["issued_at"]
        if e["kind"] == "rotate":
            self.signing_key = e["new_key"]
            self.recovery = e["next_recovery"]


def verify_chain(entries):
    """None if the list of decoded entries is a valid chain from seq 1, else the first reason."""
    if not entries or entries[0]["seq"] != 1:
        return "chain must start at seq 1"
    for e in entries:
        why = verify_entry(e)
        if why:
            return f"seq {e['seq']}: {why}"
    head = Head(entries[0])
    for e in entries[1:]:
        why = head.link(e) or head.authorised(e)
        if why:
            return f"seq {e['seq']}: {why}"
        head.advance(e)
    return None


STATUS = {"grant": "dpv:ConsentGiven", "withdraw": "dpv:ConsentWithdrawn",
          "refuse": "dpv:ConsentRefused"}


def decide(entries, controller, purpose, at):
    """(status, deciding seq, deciding hash) for a verified chain, folded whole, at time at."""
    if not VOCAB.is_(purpose, "purpose"):
        raise Reject(f"unknown purpose {purpose}")
    for e in sorted(entries, key=lambda x: x["seq"], reverse=True):
        if e["kind"] == "rotate" or e["controller"] != controller:
            continue
        if e["kind"] == "grant":
            touches = any(VOCAB.covers(q, purpose) for q in e["purposes"])
        else:
            touches = not e["purposes"] or any(
                VOCAB.covers(q, purpose) or VOCAB.covers(purpose, q) for q in e["purposes"])
        if not touches:
            continue
        status = STATUS[e["kind"]]
        if e["kind"] == "grant" and "valid_until" in e and at >= e["valid_until"]:
            status = "dpv:ConsentExpired"
        return status, e["seq"], entry_hash(encode_entry(e)).hex()
    return "dpv:ConsentUnknown", None, None


def fork_proof_verify(b):
    """None if b is a valid fork proof, else the reason."""
    try:
        r = Reader(b)
        v = r.u8("fork.version")
        if v != 1:
            return f"unknown fork proof version {v}"

        def entry():
            n = r.u16("fork.entry_len")
            raw = r.take(n, "fork.entry")
            return decode_entry(raw), raw

        a, a_raw = entry()
        bb, b_raw = entry()
        hist = [entry()[0] for _ in range(r.u8("fork.history_count"))]
        if r.pos != len(b):
            return "trailing bytes"
    except Reject as exc:
        return f"malformed: {exc}"
    if a["subject"] != bb["subject"] or a["seq"] != bb["seq"]:
        return "not at the same (subject, seq)"
    ha, hb = entry_hash(a_raw), entry_hash(b_raw)
    if ha == hb:
        return "identical entries"
    if ha > hb:
        return "not ordered by hash"
    seq = a["seq"]
    head = None
    if seq == 1:
        if hist:
            return "key history must be empty at seq 1"
    else:
        if not hist:
            return "key history lacks the first entry"
        first = hist[0]
        if first["subject"] != a["subject"] or first["seq"] != 1:
            return "key history: first entry is not seq 1 of the subject"
        why = verify_entry(first)
        if why:
            return f"key history: {why}"
        head = Head(first)
        for rot in hist[1:]:
            if rot["subject"] != head.subject or rot["kind"] != "rotate":
                return "key history: only rotations may follow the first entry"
            if rot["seq"] <= head.seq or rot["seq"] >= seq:
                return "key history: rotations out of order or not before the fork"
            why = head.authorised(rot) or verify_entry(rot)
            if why:
                return f"key history: {why}"
            head.advance(rot)
    for name, e in (("a", a), ("b", bb)):
        why = (head.authorised(e) if head else None) or verify_entry(e)
        if why:
            return f"entry {name}: {why}"
    return None


# ---------------------------------------------------------------------------------------------
# Witnessing (PROTOCOL.md section 17): signed notes, checkpoints, cosignatures, the add-checkpoint
# request and the witness's checks, the sync messages AddCheckpoint and Witness, split views.
# ---------------------------------------------------------------------------------------------

COSIGNATURE_TYPE = 0x04
NOTE_KEY_TYPE = 0x01
MAX_ADD_BODY = 69632
MAX_PROOF_LINES = 63
MAX_NOTE_BYTES = 65536
MAX_SIGNATURES = 64
EM_DASH = "\u2014"
NODE_ORIGIN_PREFIX = "consent-node/"
WITNESS_NAME_PREFIX = "consent-witness/"


class Refused(Exception):
    """A witness's refusal: an HTTP status and a reason."""

    def __init__(self, status, reason, body=None):
        super().__init__(reason)
        self.status, self.body = status, body


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    """Standard base64 with padding, canonical only (as the reference reader takes it)."""
    try:
        b = base64.b64decode(s, validate=True)
    except (ValueError, binascii.Error):
        return None
    return b if b64(b) == s else None


def leaf_hash(entry_hash):
    return sha256(b"\x00" + entry_hash)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split_point(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes):
    """RFC 6962 Merkle Tree Hash over leaf hashes."""
    if not hashes:
        return sha256(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = split_point(len(hashes))
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def subproof(m, hashes, whole):
    """RFC 6962 section 2.1.2 SUBPROOF."""
    n = len(hashes)
    if m == n:
        return [] if whole else [mth(hashes)]
    k = split_point(n)
    if m <= k:
        return subproof(m, hashes[:k], whole) + [mth(hashes[k:])]
    return subproof(m - k, hashes[k:], False) + [mth(hashes[:k])]


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 section 2.1.4.2; True when the proof holds. A first size of 0 is refused."""
    if first == 0 or first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = ([first_root] if first & (first - 1) == 0 else []) + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def key_id(name, key_type, pub):
    return sha256(name.encode() + bytes([0x0A, key_type]) + pub)[:4]


def vkey(name, key_type, pub):
    return f"{name}+{key_id(name, key_type, pub).hex()}+{b64(bytes([key_type]) + pub)}"


def valid_name(name):
    return name != "" and not any(c.isspace() or c == "+" for c in name)


def note_parse(s):
    """(text, [(name, key ID, signature bytes)]) of a signed note (17.1); Reject otherwise."""
    if len(s.encode()) > MAX_NOTE_BYTES:
        raise Reject("note too large")
    if any(unicodedata.category(c) == "Cc" and c != "\n" for c in s):
        raise Reject("control character")
    if not s.endswith("\n"):
        raise Reject("missing final newline")
    split = s.rfind("\n\n")
    if split < 0:
        raise Reject("no empty line")
    text, lines = s[:split + 1], s[split + 2:].split("\n")[:-1]
    sigs = []
    for line in lines:
        if len(sigs) == MAX_SIGNATURES:
            raise Reject("too many signature lines")
        if not line.startswith(EM_DASH + " ") or " " not in line[2:]:
            raise Reject("not a signature line")
        name, payload = line[2:].split(" ", 1)
        payload = unb64(payload)
        if not valid_name(name) or payload is None or len(payload) < 5:
            raise Reject("bad signature line")
        sigs.append((name, payload[:4], payload[4:]))
    if not sigs:
        raise Reject("no signature line")
    return text, sigs


def note_text(text, sigs):
    return text + "\n" + "".join(f"{EM_DASH} {n} {b64(i + s)}\n" for n, i, s in sigs)


def note_verify(text, sigs, name, pub):
    """The 17.1 rule for an Ed25519 note key: None if the note verifies, else the reason."""
    kid = key_id(name, NOTE_KEY_TYPE, pub)
    matching = [s for n, i, s in sigs if n == name and i == kid]
    if not matching:
        return f"no signature by {name}"
    for s in matching:
        if len(s) != 64 or verify(pub, text.encode(), s) is not None:
            return f"signature by {name} does not verify"
    return None


def checkpoint_text(origin, size, root):
    return f"{origin}\n{size}\n{b64(root)}\n"


def checkpoint_parse(text):
    """(origin, size, root) of a checkpoint text (17.1); Reject otherwise."""
    if not text.endswith("\n"):
        raise Reject("missing final newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] == "":
        raise Reject("missing origin, size or root")
    size = lines[1]
    if not (size.isascii() and size.isdigit()) or (len(size) > 1 and size[0] == "0") \
            or int(size) >= 2**64:
        raise Reject("bad size")
    root = unb64(lines[2])
    if root is None or len(root) != 32:
        raise Reject("bad root")
    if any(e == "" for e in lines[3:]):
        raise Reject("empty extension line")
    return lines[0], int(size), root


def log_key_of_origin(origin):
    rest = origin[len(NODE_ORIGIN_PREFIX):] if origin.startswith(NODE_ORIGIN_PREFIX) else ""
    if len(rest) != 64 or any(c not in "0123456789abcdef" for c in rest):
        return None
    return bytes.fromhex(rest)


def sign_checkpoint(seed, origin, size, root):
    text = checkpoint_text(origin, size, root)
    kid = key_id(origin, NOTE_KEY_TYPE, public_key(seed))
    return note_text(text, [(origin, kid, sign(seed, text.encode()))])


def cosigned_message(t, text):
    return f"cosignature/v1\ntime {t}\n".encode() + text.encode()


def cosign_line(seed, t, text):
    pub = public_key(seed)
    name = WITNESS_NAME_PREFIX + pub.hex()
    return (name, key_id(name, COSIGNATURE_TYPE, pub),
            t.to_bytes(8, "big") + sign(seed, cosigned_message(t, text)))


def cosignature_verify(text, sigs, name, pub):
    """17.2: the time of the cosignature by (name, pub), or raises Reject."""
    kid = key_id(name, COSIGNATURE_TYPE, pub)
    found = None
    for n, i, s in sigs:
        if n != name or i != kid:
            continue
        t = int.from_bytes(s[:8], "big")
        if len(s) != 72 or t > 2**63 - 1 or verify(pub, cosigned_message(t, text), s[8:]):
            raise Reject("cosignature does not verify")
        found = t
    if found is None:
        raise Reject("no cosignature")
    return found


def add_checkpoint_body(old, proof, note):
    return f"old {old}\n" + "".join(b64(h) + "\n" for h in proof) + "\n" + note


def add_checkpoint_parse(body):
    """(old, proof, note) of an add-checkpoint body (17.3); Refused(400) otherwise."""
    if len(body) > MAX_ADD_BODY:
        raise Refused(400, "body too large")
    try:
        s = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "not UTF-8") from None
    if "\n\n" not in s:
        raise Refused(400, "no empty line")
    head, note = s.split("\n\n", 1)
    lines = head.split("\n")
    m = re.fullmatch(r"old (0|[1-9][0-9]*)", lines[0])
    if not m or int(m.group(1)) >= 2**64:
        raise Refused(400, "bad old line")
    proof = []
    for line in lines[1:]:
        h = unb64(line)
        if h is None or len(h) != 32 or len(proof) == MAX_PROOF_LINES:
            raise Refused(400, "bad proof line")
        proof.append(h)
    try:
        note_parse(note)
    except Reject as exc:
        raise Refused(400, str(exc)) from None
    return int(m.group(1)), proof, note


def witness_check(body, held, witness_seed, t):
    """The checks of 17.4 for a witness holding the note `held` (or None): (status, body)."""
    try:
        old, proof, note = add_checkpoint_parse(body)
        text, sigs = note_parse(note)
        try:
            origin, size, root = checkpoint_parse(text)
        except Reject as exc:
            raise Refused(400, str(exc)) from None
        pub = log_key_of_origin(origin)
        if pub is None:
            raise Refused(404, "unknown log origin")
        why = note_verify(text, sigs, origin, pub)
        if why:
            raise Refused(403, why)
        if old > size:
            raise Refused(400, "old size exceeds the checkpoint size")
        held_size, held_root = 0, None
        if held is not None:
            _, held_size, held_root = checkpoint_parse(note_parse(held)[0])
        if old != held_size:
            raise Refused(409, "size conflict", f"{held_size}\n")
        if held is None:
            if proof:
                raise Refused(422, "proof without a held checkpoint")
        elif held_size == size:
            if held_root != root:
                raise Refused(409, "split view")
        elif held_size == 0:
            if proof:
                raise Refused(422, "proof from the empty tree")
        elif not verify_consistency(held_size, size, held_root, root, proof):
            raise Refused(422, "consistency proof does not verify")
    except Refused as r:
        return r.status, r.body
    name, kid, payload = cosign_line(witness_seed, t, text)
    return 200, f"{EM_DASH} {name} {b64(kid + payload)}\n"


def sync_add_checkpoint(body):
    return b"\x07" + len(body).to_bytes(4, "big") + body


def sync_witness(status, body):
    return b"\x87" + status.to_bytes(2, "big") + len(body).to_bytes(4, "big") + body


def sync_log_entries(start, limit):
    return b"\x09" + start.to_bytes(8, "big") + limit.to_bytes(2, "big")


def sync_checkpoint(note):
    return b"\x88" + len(note).to_bytes(4, "big") + note


def sync_decode(b, request):
    """Decodes an AddCheckpoint, LogCheckpoint or LogEntries request, or a Witness or Checkpoint
    response (16.5, 16.6); Reject otherwise. LogCheckpoint gives b"", LogEntries (start, limit)."""
    if not b:
        raise Reject("empty")
    if request and b[0] == 0x08:
        if len(b) != 1:
            raise Reject("trailing bytes")
        return b""
    if request and b[0] == 0x09:
        if len(b) < 11:
            raise Reject("truncated")
        if len(b) > 11:
            raise Reject("trailing bytes")
        limit = int.from_bytes(b[9:11], "big")
        if not 1 <= limit <= 1024:
            raise Reject("limit out of range")
        return (int.from_bytes(b[1:9], "big"), limit)
    if request and b[0] == 0x07:
        fixed, lo = 5, 1
    elif not request and b[0] == 0x88:
        fixed, lo = 5, 1
    elif not request and b[0] == 0x87:
        if len(b) < 3:
            raise Reject("truncated")
        status = int.from_bytes(b[1:3], "big")
        if not 100 <= status <= 599:
            raise Reject("status out of range")
        fixed, lo = 7, 0
    else:
        raise Reject("unknown tag")
    if len(b) < fixed:
        raise Reject("truncated")
    n = int.from_bytes(b[fixed - 4:fixed], "big")
    if not lo <= n <= MAX_ADD_BODY:
        raise Reject("length out of range")
    if len(b) < fixed + n:
        raise Reject("truncated")
    if len(b) > fixed + n:
        raise Reject("trailing bytes")
    return b[fixed:]


def split_view_json(a, b, prefix=None):
    obj = {"a": a, "b": b}
    if prefix is not None:
        root, proof = prefix
        obj["prefix"] = {"root": root.hex(), "proof": [h.hex() for h in proof]}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def hex32(v):
    """32 bytes from 64 lowercase hex digits, or raises Reject."""
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
        raise Reject("not 64 lowercase hex digits")
    return bytes.fromhex(v)


def split_view_verify(text):
    """17.8: (origin, size) of a valid split-view proof in JSON, or raises Reject."""
    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except ValueError as exc:
        raise Reject(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Reject("not a JSON object")
    a, b = obj.get("a"), obj.get("b")
    if not isinstance(a, str) or not isinstance(b, str):
        raise Reject("not a split-view proof")
    if not a.encode() < b.encode():
        raise Reject("not in canonical order")
    origin = checkpoint_parse(note_parse(a)[0])[0]
    pub = log_key_of_origin(origin)
    if pub is None:
        raise Reject("unknown log origin")
    cps = []
    for n in (a, b):
        t, sigs = note_parse(n)
        why = note_verify(t, sigs, origin, pub)
        if why:
            raise Reject(why)
        cps.append(checkpoint_parse(t))
    (oa, sa, ra), (ob, sb, rb) = cps
    prefix = obj.get("prefix")
    if oa != ob:
        raise Reject("not a split view")
    if sa == sb:
        if prefix is not None or ra == rb:
            raise Reject("not a split view")
        return oa, sa
    if not isinstance(prefix, dict) or not isinstance(prefix.get("proof"), list):
        raise Reject("two sizes without a prefix")
    root = hex32(prefix.get("root"))
    proof = [hex32(h) for h in prefix["proof"]]
    (m, rm), (n, rn) = sorted([(sa, ra), (sb, rb)])
    if not verify_consistency(m, n, root, rn, proof) or root == rm:
        raise Reject("not a split view")
    return oa, m


def split_view_id(a, b):
    return sha256(a.encode() + b"\x00" + b.encode())


# ---------------------------------------------------------------------------------------------
# The checks.
# ---------------------------------------------------------------------------------------------

RESULTS = [0, 0]


def check(name, ok, detail=""):
    RESULTS[0 if ok else 1] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))


def check_eq(name, got, want):
    check(name, got == want, "" if got == want else f"got {got!r}, want {want!r}")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, object_pairs_hook=no_duplicates)


def decoded_or_reason(b):
    try:
        return decode_entry(b), None
    except Reject as exc:
        return None, str(exc)


def check_self():
    # RFC 8032 section 7.1, TEST 1.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    check_eq("ed25519/rfc8032-test-1/public", public_key(seed).hex(),
             "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = sign(seed, b"")
    check_eq("ed25519/rfc8032-test-1/signature", sig.hex(),
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc6"
             "1e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    check("ed25519/rfc8032-test-1/verifies", verify(public_key(seed), b"", sig) is None)


def check_speccheck():
    cases = load_json(SPECCHECK)
    accepted = []
    for i, c in enumerate(cases):
        why = verify(bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]),
                     bytes.fromhex(c["signature"]))
        want = i in SPECCHECK_ACCEPTED
        check(f"ed25519/speccheck/case-{i}/{'accepted' if want else 'rejected'}",
              (why is None) == want, why or "")
        if why is None:
            accepted.append(i)
    check_eq("ed25519/speccheck/accepted-cases", accepted, SPECCHECK_ACCEPTED)


def check_vocab(doc):
    vocab_text = doc_block(doc, "proto/vocab/vocab-v1.tsv")
    tcf_text = doc_block(doc, "proto/vocab/tcf-v2.2.tsv")
    with open(VOCAB_FILE, encoding="utf-8") as f:
        check_eq("vocab/doc-copy-equals-vocab-v1.tsv", vocab_text, f.read())
    with open(TCF_FILE, encoding="utf-8") as f:
        check_eq("vocab/doc-copy-equals-tcf-v2.2.tsv", tcf_text, f.read())
    v = Vocab(vocab_text, tcf_text)
    counts = {k: sum(1 for c in v.kind.values() if c == k) for k in ("purpose", "legal-basis",
                                                                     "data")}
    check_eq("vocab/term-counts", counts, {"purpose": 95, "legal-basis": 24, "data": 29})
    check("vocab/hierarchy-examples",
          v.covers("dpv:Marketing", "dpv:DirectMarketing")
          and not v.covers("dpv:DirectMarketing", "dpv:Marketing")
          and v.covers("dpv:Marketing", "dpv:TargetedAdvertising")
          and v.covers("dpv:Personalisation", "dpv:PersonalisedAdvertising"))
    check_eq("vocab/tcf-ids", sorted(v.tcf), list(range(1, 12)))
    check("vocab/tcf-codes-are-purposes",
          all(v.is_(c, "purpose") for codes, _ in v.tcf.values() for c in codes))
    check_eq("vocab/tcf-1-maps-to-nothing", v.tcf[1][0], [])
    check_eq("vocab/dpv:Advertising-to-tcf",
             [i for i, (codes, _) in sorted(v.tcf.items())
              if any(v.covers("dpv:Advertising", c) for c in codes)], [2, 3, 4, 7])
    return v


def check_worked_example(doc, vec):
    """The annotated table of PROTOCOL.md section 15 must spell out the first vector entry."""
    section = doc.split("## 15. Worked example", 1)[1].split("\n## ", 1)[0]
    out, ok_offsets = b"", True
    for line in section.split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        offset, size, raw = int(cells[0]), int(cells[1]), cells[3].strip("`")
        m = re.fullmatch(r"([0-9a-f]{2})` × (\d+)", raw)
        b = bytes.fromhex(m.group(1)) * int(m.group(2)) if m else bytes.fromhex(raw)
        ok_offsets &= offset == len(out) and size == len(b)
        out += b
    check("worked-example/offsets-and-sizes", ok_offsets)
    check_eq("worked-example/bytes-equal-first-vector", out.hex(), vec["entries"][0]["encoding"])
    notice = b"We will send you offers by e-mail."
    check_eq("worked-example/notice-sha256", sha256(notice).hex(),
             vec["entries"][0]["json"]["notice"]["sha256"])


def check_domains(vec):
    check_eq("domains/signature", vec["domains"]["signature"], SIGNATURE_DOMAIN.hex())
    check_eq("domains/hash", vec["domains"]["hash"], HASH_DOMAIN.hex())
    check_eq("domains/recovery", vec["domains"]["recovery"], RECOVERY_DOMAIN.hex())


def check_keys(vec):
    for k in vec["keys"]:
        seed = bytes.fromhex(k["seed"])
        pub = public_key(seed)
        check_eq(f"keys/{k['name']}/public", pub.hex(), k["public"])
        check_eq(f"keys/{k['name']}/recovery_commitment", recovery_commitment(pub).hex(),
                 k["recovery_commitment"])


def check_entries(vec):
    for v in vec["entries"]:
        n = f"entries/{v['name']}"
        try:
            e = entry_from_json(v["json"])
        except Reject as exc:
            check(f"{n}/json-form-accepted", False, str(exc))
            continue
        check(f"{n}/json-form-accepted", True)
        content = encode_content(e)
        check_eq(f"{n}/content", content.hex(), v["content"])
        check_eq(f"{n}/signing_input", signing_input(e).hex(), v["signing_input"])
        seed = bytes.fromhex(v["signer_seed"])
        check_eq(f"{n}/signer-from-seed", public_key(seed).hex(), e["signer"])
        sig = sign(seed, signing_input(e))
        check_eq(f"{n}/signature-rederived", sig.hex(), v["signature"])
        check_eq(f"{n}/signature-in-json", e["signature"], v["signature"])
        enc = content + sig
        check_eq(f"{n}/encoding", enc.hex(), v["encoding"])
        check_eq(f"{n}/hash", entry_hash(enc).hex(), v["hash"])
        check_eq(f"{n}/signature-valid", verify_entry(e), None)
        d, why = decoded_or_reason(bytes.fromhex(v["encoding"]))
        check(f"{n}/decodes", d is not None, why or "")
        if d is not None:
            check_eq(f"{n}/decode-gives-json-form", entry_to_json(d), entry_to_json(e))
            check_eq(f"{n}/json-form-round-trip", json.loads(json.dumps(entry_to_json(d))),
                     v["json"])
            check_eq(f"{n}/re-encode", encode_entry(d).hex(), v["encoding"])


def check_chains(vec):
    for c in vec["chains"]:
        n = f"chains/{c['name']}"
        entries = []
        for i, h in enumerate(c["entries"]):
            e, why = decoded_or_reason(bytes.fromhex(h))
            if e is None:
                check(f"{n}/entry-{i}-decodes", False, why)
                break
            entries.append(e)
        else:
            why = verify_chain(entries)
            detail = why or ""
            if c["error"]:
                detail += f"; reference: {c['error']}"
            check(f"{n}/valid={c['valid']}", (why is None) == c["valid"], detail)
            for d in c["decisions"] or []:
                dn = f"{n}/decide {d['purpose']} at {d['at']} ({d['controller'][:8]})"
                status, seq, h = decide(entries, d["controller"], d["purpose"], d["at"])
                got = (status, seq, h, status == "dpv:ConsentGiven")
                want = (d["status"], d["deciding_seq"], d["deciding_hash"], d["allow"])
                check_eq(dn, got, want)
                prefix = [e for e in entries if e["issued_at"] <= d["at"]]
                check_eq(dn + " as of at", decide(prefix, d["controller"], d["purpose"],
                                                  d["at"])[:2], (d["status"], d["deciding_seq"]))


def check_fork_proofs(vec):
    for f in vec["fork_proofs"]:
        why = fork_proof_verify(bytes.fromhex(f["encoding"]))
        check(f"fork_proofs/{f['name']}/valid={f['valid']}", (why is None) == f["valid"],
              why or "")


def check_invalid(vec):
    for b in vec["invalid_encodings"]:
        _, why = decoded_or_reason(bytes.fromhex(b["encoding"]))
        check(f"invalid_encodings/{b['name']}/rejected", why is not None,
              f"{why}; reference: {b['error']}")


def check_mutations(vec):
    """Decoder rules of PROTOCOL.md on hand-made variants of the vector entries."""
    ents = {v["name"]: entry_from_json(v["json"]) for v in vec["entries"]}
    base = ents["grant-all-fields"]
    raw = encode_entry(base)

    def patched(offset, value):
        b = bytearray(raw)
        b[offset] = value
        return bytes(b)

    def variant(**changes):
        e = json.loads(json.dumps(base))
        for k, val in changes.items():
            if val is None:
                e.pop(k, None)
            else:
                e[k] = val
        return e

    # encode_entry applies no form rule, so these variants test that the decoder applies them.
    raw_encode = encode_entry

    cases = [
        ("empty input", b"", False),
        ("4097 bytes", raw + bytes(4097 - len(raw)), False),
        ("kind 0", patched(1, 0), False),
        ("kind 5", patched(1, 5), False),
        ("recovery tag 2", patched(114, 2), False),
        # Tag 0 at seq 1, without the 32 bytes that followed the tag.
        ("recovery tag 0 at seq 1", raw[:114] + b"\x00" + raw[147:], False),
        ("seq 0", raw_encode(variant(seq=0)), False),
        ("seq 2^53", raw_encode(variant(seq=2**53, prev="11" * 32, recovery=None)), False),
        ("issued_at 2^53", raw_encode(variant(issued_at=2**53, valid_until=None)), False),
        ("prev non-zero at seq 1", raw_encode(variant(prev="11" * 32)), False),
        ("seq 2 with zero prev", raw_encode(variant(seq=2, recovery=None)), False),
        ("seq 2 with recovery", raw_encode(variant(seq=2, prev="11" * 32)), False),
        ("seq 2 well formed", raw_encode(variant(seq=2, prev="11" * 32, recovery=None)), True),
        ("unknown purpose", raw_encode(variant(purposes=["dpv:Analytics"])), False),
        ("data code as purpose", raw_encode(variant(purposes=["pd:EmailAddress"])), False),
        ("legal basis as purpose", raw_encode(variant(purposes=["dpv:Consent"])), False),
        ("purpose as legal basis", raw_encode(variant(legal_basis="dpv:Marketing")), False),
        ("duplicate purposes",
         raw_encode(variant(purposes=["dpv:Marketing", "dpv:Marketing"])), False),
        ("grant without purposes", raw_encode(variant(purposes=[])), False),
        ("17 data codes", raw_encode(variant(data=sorted(
            c for c, k in VOCAB.kind.items() if k == "data")[:17])), False),
        ("16 data codes", raw_encode(variant(data=sorted(
            c for c, k in VOCAB.kind.items() if k == "data")[:16])), True),
        ("lower-case jurisdiction", raw_encode(variant(jurisdiction="eu")), False),
        ("one-letter jurisdiction", raw_encode(variant(jurisdiction="E")), False),
        ("jurisdiction US-CA", raw_encode(variant(jurisdiction="US-CA")), True),
        ("notice url with a space", raw_encode(variant(notice=dict(base["notice"],
                                                                   url="a b"))), False),
        ("empty notice url", raw_encode(variant(notice=dict(base["notice"], url=""))), False),
        ("513-byte notice url", raw_encode(variant(notice=dict(base["notice"],
                                                               url="a" * 513))), False),
        ("512-byte notice url", raw_encode(variant(notice=dict(base["notice"],
                                                               url="a" * 512))), True),
        ("valid_until equal to issued_at",
         raw_encode(variant(valid_until=base["issued_at"])), False),
        ("valid_until on a withdraw", raw_encode(variant(kind="withdraw")), False),
        ("withdraw without purposes",
         raw_encode(variant(kind="withdraw", purposes=[], valid_until=None)), True),
        ("rotate at seq 1", raw_encode(dict(ents["rotate"], seq=1, prev=ZERO32,
                                            recovery="22" * 32)), False),
    ]
    # Patch the method and gpc bytes (the last two before the signature).
    cases.append(("method 0", patched(len(raw) - 66, 0), False))
    cases.append(("method 6", patched(len(raw) - 66, 6), False))
    cases.append(("gpc 3", patched(len(raw) - 65, 3), False))
    cases.append(("gpc 2", patched(len(raw) - 65, 2), True))
    cases.append(("trailing byte", raw + b"\x00", False))
    cases.append(("truncated signature", raw[:-1], False))
    for name, b, want in cases:
        _, why = decoded_or_reason(b)
        check(f"decoder-rules/{name}/{'accepted' if want else 'rejected'}",
              (why is None) == want, why or "")
    # JSON-form rules.
    j = vec["entries"][0]["json"]
    jcases = [
        ("unknown member", dict(j, name="Alice"), False),
        ("missing legal_basis", {k: v for k, v in j.items() if k != "legal_basis"}, False),
        ("missing data", {k: v for k, v in j.items() if k != "data"}, False),
        ("new_key on a grant", dict(j, new_key=j["subject"]), False),
        ("upper-case hex", dict(j, subject=j["subject"].upper()), False),
        ("seq 2^53", dict(j, seq=2**53), False),
        ("seq as a string", dict(j, seq="1"), False),
        ("gpc as a number", dict(j, gpc=1), False),
        ("gpc null (absent)", dict(j, gpc=None), True),
        ("method unknown", dict(j, method="email"), False),
        ("kind upper-case", dict(j, kind="Grant"), False),
        ("version 2", dict(j, version=2), False),
    ]
    text = json.dumps(j)
    jcases += [
        ("duplicate member", text[:-1] + ', "seq": 1}', False),
        ("seq written 1.0", text.replace('"seq": 1,', '"seq": 1.0,'), False),
        ("seq written 1e0", text.replace('"seq": 1,', '"seq": 1e0,'), False),
        ("issued_at written -0", text.replace(f'"issued_at": {j["issued_at"]}',
                                              '"issued_at": -0'), False),
        ("escaped string", text.replace('"EU"', '"\\u0045U"'), True),
    ]
    for name, obj, want in jcases:
        try:
            if isinstance(obj, str):
                entry_from_json_text(obj)
            else:
                entry_from_json(obj)
            why = None
        except Reject as exc:
            why = str(exc)
        check(f"json-rules/{name}/{'accepted' if want else 'rejected'}", (why is None) == want,
              why or "")


def check_witness(doc):
    """PROTOCOL.md section 17: re-derives proto/testdata/vectors/witness-v1.json from its inputs
    and checks that section 17.10 shows its values."""
    wv = load_json(WITNESS_VECTORS)
    inp = wv["inputs"]
    log_seed, wit_seed, other_seed = (bytes.fromhex(inp[k])
                                      for k in ("log_seed", "witness_seed", "other_seed"))
    t = inp["timestamp"]
    check_eq("witness/constants", wv["constants"], {
        "cosignature_type": COSIGNATURE_TYPE, "max_add_body": MAX_ADD_BODY,
        "max_proof_lines": MAX_PROOF_LINES})

    # Keys, names, key IDs, vkeys (17.1, 17.2).
    log_pub = public_key(log_seed)
    origin = NODE_ORIGIN_PREFIX + log_pub.hex()
    check_eq("witness/log", wv["log"], {
        "public_key": log_pub.hex(), "origin": origin,
        "key_id": key_id(origin, NOTE_KEY_TYPE, log_pub).hex(),
        "vkey": vkey(origin, NOTE_KEY_TYPE, log_pub)})
    check("witness/log-origins",
          log_key_of_origin(origin) == log_pub
          and log_key_of_origin(origin.upper().replace("CONSENT-NODE", "consent-node")) is None
          and log_key_of_origin(origin[:-1]) is None
          and log_key_of_origin("example.com/log") is None)
    wit_pub = public_key(wit_seed)
    name = WITNESS_NAME_PREFIX + wit_pub.hex()
    check_eq("witness/cosigner", wv["cosigner"], {
        "public_key": wit_pub.hex(), "name": name,
        "key_id": key_id(name, COSIGNATURE_TYPE, wit_pub).hex(),
        "vkey": vkey(name, COSIGNATURE_TYPE, wit_pub)})

    # The tree, the checkpoints, the consistency proof (17.1).
    hashes = [leaf_hash(bytes.fromhex(h)) for h in inp["entry_hashes"]]
    other = [leaf_hash(bytes.fromhex(h)) for h in inp["other_entry_hashes"]]
    cps = {
        "size_3": (log_seed, origin, 3, mth(hashes[:3])),
        "size_8": (log_seed, origin, 8, mth(hashes)),
        "size_3_other": (log_seed, origin, 3, mth(other)),
        "unknown_origin": (log_seed, "example.com/log", 1, bytes(32)),
        "another_key": (other_seed, origin, 1, bytes(32)),
    }
    notes = {}
    for k, (seed, o, size, root) in cps.items():
        notes[k] = sign_checkpoint(seed, o, size, root)
        check_eq(f"witness/checkpoints/{k}", wv["checkpoints"][k], {
            "origin": o, "size": size, "root": root.hex(), "root_base64": b64(root),
            "note": notes[k]})
        text, sigs = note_parse(notes[k])
        check_eq(f"witness/checkpoints/{k}/parses", (note_text(text, sigs),
                                                      checkpoint_parse(text)),
                 (notes[k], (o, size, root)))
    check("witness/checkpoints/log-signature",
          all(note_verify(*note_parse(notes[k]), origin, log_pub) is None
              for k in ("size_3", "size_8", "size_3_other"))
          and note_verify(*note_parse(notes["another_key"]), origin, log_pub) is not None)
    proof = subproof(3, hashes, True)
    check_eq("witness/consistency-proof-3-8", wv["consistency_proof_3_8"], [h.hex() for h in proof])
    check("witness/consistency-proof-verifies",
          verify_consistency(3, 8, mth(hashes[:3]), mth(hashes), proof)
          and not verify_consistency(3, 8, mth(other), mth(hashes), proof)
          and not verify_consistency(3, 8, mth(hashes[:3]), mth(hashes), proof[1:])
          and not verify_consistency(0, 8, mth([]), mth(hashes), proof))

    # The cosignature (17.2).
    text8 = note_parse(notes["size_8"])[0]
    msg = cosigned_message(t, text8)
    cname, kid, payload = cosign_line(wit_seed, t, text8)
    line = f"{EM_DASH} {cname} {b64(kid + payload)}\n"
    cosigned = notes["size_8"] + line
    check_eq("witness/cosignature", wv["cosignature"], {
        "message": msg.hex(), "signature": payload[8:].hex(), "payload": (kid + payload).hex(),
        "line": line, "cosigned_note": cosigned})
    ctext, csigs = note_parse(cosigned)
    check_eq("witness/cosignature/verifies", cosignature_verify(ctext, csigs, name, wit_pub), t)
    check("witness/cosignature/log-signature-still-verifies",
          note_verify(ctext, csigs, origin, log_pub) is None)
    text3 = note_parse(notes["size_3"])[0]
    for what, sigs in [
            ("other checkpoint", note_parse(notes["size_3"])[1] + csigs[1:]),
            ("changed time", csigs[:1] + [(cname, kid, (t + 1).to_bytes(8, "big") + payload[8:])]),
            ("time above 2^63 - 1", csigs[:1] + [(cname, kid, (2**63).to_bytes(8, "big")
                                                   + payload[8:])])]:
        try:
            cosignature_verify(text3 if what == "other checkpoint" else ctext, sigs, name, wit_pub)
            check(f"witness/cosignature/{what}/rejected", False)
        except Reject:
            check(f"witness/cosignature/{what}/rejected", True)

    # The add-checkpoint body (17.3) and the witness's checks (17.4).
    body = add_checkpoint_body(3, proof, notes["size_8"])
    check_eq("witness/add-checkpoint/body", wv["add_checkpoint"]["body"], body)
    check_eq("witness/add-checkpoint/parses", add_checkpoint_parse(body.encode()),
             (3, proof, notes["size_8"]))
    zeroed = [bytes(32)] + proof[1:]
    cases = {
        "extend": (notes["size_3"], body),
        "first": (None, add_checkpoint_body(0, [], notes["size_3"])),
        "old-has-leading-zero": (None, "old 03\n\n" + notes["size_3"]),
        "unknown-origin": (None, add_checkpoint_body(0, [], notes["unknown_origin"])),
        "signed-by-another-key": (None, add_checkpoint_body(0, [], notes["another_key"])),
        "old-above-size": (None, add_checkpoint_body(9, [], notes["size_8"])),
        "old-is-not-held-size": (notes["size_3"], add_checkpoint_body(0, [], notes["size_8"])),
        "proof-when-nothing-held": (None, add_checkpoint_body(0, proof, notes["size_8"])),
        "split-view": (notes["size_3"], add_checkpoint_body(3, [], notes["size_3_other"])),
        "bad-proof": (notes["size_3"], add_checkpoint_body(3, zeroed, notes["size_8"])),
    }
    check_eq("witness/checks/names", [c["name"] for c in wv["witness_checks"]], list(cases))
    for c in wv["witness_checks"]:
        held, b = cases.get(c["name"], (None, ""))
        status, resp = witness_check(b.encode(), held, wit_seed, t)
        check_eq(f"witness/checks/{c['name']}", (c["held"], c["body"], c["status"], c["response"]),
                 (held, b, status, resp))
    for what, bad in [("old with a sign", "old +3\n\n" + notes["size_3"]),
                      ("no empty line", "old 0\n" + notes["size_3"]),
                      ("64 proof lines", add_checkpoint_body(3, proof * 16, notes["size_8"])),
                      ("proof line of 31 bytes", add_checkpoint_body(3, [bytes(31)],
                                                                     notes["size_8"])),
                      ("body too large", "old 0\n\n" + "x" * MAX_ADD_BODY)]:
        check_eq(f"witness/checks/{what}/400",
                 witness_check(bad.encode(), None, wit_seed, t)[0], 400)

    # The sync messages (16.5, 16.6, 17.6).
    req = sync_add_checkpoint(body.encode())
    r200 = sync_witness(200, line.encode())
    r409 = sync_witness(409, b"3\n")
    check_eq("witness/sync", wv["add_checkpoint"], {
        "body": body, "sync_request": req.hex(), "sync_response_200": r200.hex(),
        "sync_response_409": r409.hex()})
    check_eq("witness/sync/decode", (sync_decode(req, True), sync_decode(r200, False),
                                     sync_decode(r409, False)),
             (body.encode(), line.encode(), b"3\n"))
    for what, b, is_request in [
            ("empty AddCheckpoint body", sync_add_checkpoint(b""), True),
            ("AddCheckpoint body over MAX_ADD_BODY", sync_add_checkpoint(b"x" * (MAX_ADD_BODY + 1)),
             True),
            ("AddCheckpoint trailing byte", req + b"\x00", True),
            ("AddCheckpoint truncated", req[:-1], True),
            ("Witness status 99", sync_witness(99, b""), False),
            ("Witness status 600", sync_witness(600, b""), False),
            ("Witness body over MAX_ADD_BODY", sync_witness(200, b"x" * (MAX_ADD_BODY + 1)), False),
            ("tag 0a", b"\x0a" + req[1:], True),
            ("LogCheckpoint with a byte", b"\x08\x00", True),
            ("LogEntries limit 0", sync_log_entries(3, 0), True),
            ("LogEntries limit 1025", sync_log_entries(3, 1025), True),
            ("LogEntries truncated", sync_log_entries(3, 5)[:-1], True),
            ("empty Checkpoint", sync_checkpoint(b""), False),
            ("Checkpoint as a request", sync_checkpoint(b"x"), True),
            ("Witness as a request", r409, True)]:
        try:
            sync_decode(b, is_request)
            check(f"witness/sync/{what}/rejected", False)
        except Reject:
            check(f"witness/sync/{what}/rejected", True)
    check_eq("witness/sync/empty Witness body accepted", sync_decode(sync_witness(200, b""), False),
             b"")
    # The log-audit messages (16.5, 16.6).
    la = wv["log_audit"]
    check_eq("log-audit/messages", la, {
        "log_checkpoint_request": "08",
        "log_entries_request_3_5": sync_log_entries(3, 5).hex(),
        "checkpoint_response_size_8": sync_checkpoint(notes["size_8"].encode()).hex()})
    check_eq("log-audit/decode", (
        sync_decode(bytes.fromhex(la["log_checkpoint_request"]), True),
        sync_decode(bytes.fromhex(la["log_entries_request_3_5"]), True),
        sync_decode(bytes.fromhex(la["checkpoint_response_size_8"]), False)),
        (b"", (3, 5), notes["size_8"].encode()))

    # Split-view proofs (17.8).
    a, b = sorted([notes["size_3"], notes["size_3_other"]], key=str.encode)
    js = split_view_json(a, b)
    check_eq("witness/split-view", wv["split_view"], {"json": js, "id": split_view_id(a, b).hex()})
    check_eq("witness/split-view/verifies", split_view_verify(js), (origin, 3))
    for what, bad in [("swapped", split_view_json(b, a)),
                      ("different sizes", split_view_json(notes["size_3"], notes["size_8"])),
                      ("same note twice", split_view_json(a, a)),
                      ("another key", split_view_json(*sorted([notes["another_key"],
                                                                notes["size_3"]],
                                                               key=str.encode))),
                      ("duplicate member", js[:-1] + ',"a":' + json.dumps(a) + "}")]:
        try:
            split_view_verify(bad)
            check(f"witness/split-view/{what}/rejected", False)
        except Reject:
            check(f"witness/split-view/{what}/rejected", True)

    # A split view across sizes 3 and 8 (17.8): the second history at 3 against the log at 8,
    # with the log's own root at 3 and the proof from 3 to 8.
    a, b = sorted([notes["size_3_other"], notes["size_8"]], key=str.encode)
    js = split_view_json(a, b, (mth(hashes[:3]), proof))
    check_eq("witness/split-view-across", wv["split_view_across"],
             {"json": js, "id": split_view_id(a, b).hex()})
    check_eq("witness/split-view-across/verifies", split_view_verify(js), (origin, 3))
    for what, bad in [("no prefix", split_view_json(a, b)),
                      ("the smaller root as prefix", split_view_json(a, b, (mth(other), proof))),
                      ("a short proof", split_view_json(a, b, (mth(hashes[:3]), proof[1:]))),
                      ("a prefix on one size",
                       split_view_json(*sorted([notes["size_3"], notes["size_3_other"]],
                                               key=str.encode), (mth(hashes[:3]), proof)))]:
        try:
            split_view_verify(bad)
            check(f"witness/split-view-across/{what}/rejected", False)
        except Reject:
            check(f"witness/split-view-across/{what}/rejected", True)

    # Section 17.10 shows the values (long hex wrapped over lines).
    section = doc.split("\n### 17.10 Test vectors\n", 1)[1].split("\n## ", 1)[0]
    packed = re.sub(r"\s", "", section)
    shown = [wv["log"][k] for k in ("public_key", "origin", "key_id", "vkey")]
    shown += [wv["cosigner"][k] for k in ("public_key", "name", "key_id", "vkey")]
    shown += [wv["checkpoints"][c][k] for c in ("size_3", "size_8", "size_3_other")
              for k in ("root", "root_base64", "note")]
    shown += wv["consistency_proof_3_8"] + [msg.decode()]
    shown += [wv["cosignature"][k] for k in ("message", "signature", "payload", "line",
                                             "cosigned_note")]
    shown += [wv["add_checkpoint"][k] for k in ("body", "sync_request", "sync_response_200",
                                                "sync_response_409")]
    shown += [wv["split_view"]["json"], wv["split_view"]["id"]]
    shown += [wv["split_view_across"]["json"], wv["split_view_across"]["id"]]
    missing = [v for v in shown
               if not (packed if re.fullmatch(r"[0-9a-f]+", v) else section).count(v)]
    check("witness/doc-17.10-shows-the-vectors", not missing,
          f"missing {missing[0]!r}" if missing else "")
    for c in wv["witness_checks"]:
        row = next((ln for ln in section.split("\n") if ln.startswith(f"| `{c['name']}` |")), "")
        check(f"witness/doc-17.10-check-row/{c['name']}", f"| {c['status']} |" in row)


def main():
    global VOCAB
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    vec = load_json(VECTORS)
    check_self()
    VOCAB = check_vocab(doc)
    check_speccheck()
    check_domains(vec)
    check_worked_example(doc, vec)
    check_keys(vec)
    check_entries(vec)
    check_chains(vec)
    check_fork_proofs(vec)
    check_invalid(vec)
    check_mutations(vec)
    check_witness(doc)
    print(f"{RESULTS[0]} passed, {RESULTS[1]} failed")
    return 1 if RESULTS[1] else 0


if __name__ == "__main__":
    sys.exit(main())
