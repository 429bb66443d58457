#!/usr/bin/env python3
"""Raw wire-protocol clients over TLS for tests/cli_tls.sh (Python's ssl module, no uhlm code).

usage: tls_raw.py PORT CA TOKEN CASE [ARG]
  badinput       the server's bad-input cases, each on its own TLS connection: the right token
                 gets WELCOME, a wrong one ERROR AUTH; garbage ERROR BAD_MAGIC; a frame over the
                 limit ERROR TOO_LARGE; a truncated HELLO ERROR BAD_FRAME; OPEN before HELLO
                 BAD_STATE; an unknown type UNKNOWN_TYPE; a frame cut mid-payload and closed;
                 after WELCOME a malformed VERIFY gets a non-fatal ERROR and PING still PONGs;
                 HELLO and two PINGs in one write (one TLS record: the server must read the
                 frames it already decrypted) get WELCOME and two PONGs. Fatal errors end with
                 EOF.
  fuzz N         N connections of seeded random bytes over TLS (some behind a valid frame
                 header, some behind a valid HELLO), each read until the server closes it or
                 goes quiet; then a HELLO must still get WELCOME.
  stall N LIMIT  holds N TCP connections that sent part of a TLS ClientHello (and one that sent
                 nothing) and prints "stalling" once they are open; exits 0 when the server has
                 closed every one of them (its handshake timeout), 1 if any is still open after
                 LIMIT seconds.
Prints "ok" (or "stalling" then "ok") and exits 0 on success; an AssertionError otherwise."""
import os
import random
import socket
import ssl
import struct
import sys
import time

port, ca, token, case = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4]
arg = sys.argv[5] if len(sys.argv) > 5 else None

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3


def connect():
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else each TLS connection waits 40 ms for delayed ACKs
    return ctx.wrap_socket(raw, server_hostname="localhost")


def frame(t, payload, version=1):
    return b"UHLM" + struct.pack("<HHI", version, t, len(payload)) + payload


def hello_payload(tok):
    return (struct.pack("<HHQI", 1, 0, 0, 512) + struct.pack("<H", len(tok)) + tok +
            struct.pack("<H", 3) + b"tls")


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError(f"EOF after {len(b)} of {n} bytes")
        b += c
    return b


def recv_frame(s):
    h = recv_exact(s, 12)
    assert h[:4] == b"UHLM", h
    _, t, n = struct.unpack("<HHI", h[4:])
    return t, recv_exact(s, n)


def expect_error(s, code, fatal):
    t, p = recv_frame(s)
    assert t == 12, ("want ERROR", t, p)
    c, flags = struct.unpack("<HH", p[:4])
    assert c == code, ("want code", code, "got", c, p)
    assert bool(flags & 1) == fatal, ("fatal flag", flags, p)
    if fatal:
        assert_eof(s)


def assert_eof(s):
    try:
        rest = s.recv(100)
    except (ssl.SSLError, ConnectionResetError):
        rest = b""
    assert rest == b"", ("data after a fatal ERROR", rest)


def welcome(s):
    t, p = recv_frame(s)
    assert t == 2, ("want WELCOME", t, p)


def badinput():
    s = connect(); s.sendall(frame(1, hello_payload(token))); welcome(s); s.close()
    s = connect(); s.sendall(frame(1, hello_payload(b"x" + token))); expect_error(s, 11, True)
    s = connect(); s.sendall(b"\x00garbage garbage"); expect_error(s, 2, True)
    s = connect(); s.sendall(b"UHLM" + struct.pack("<HHI", 1, 1, 0x7FFFFFF0)); expect_error(s, 4, True)
    s = connect(); s.sendall(frame(1, hello_payload(token)[:9])); expect_error(s, 1, True)
    s = connect(); s.sendall(frame(3, b"\x00" * 16)); expect_error(s, 18, True)
    s = connect(); s.sendall(frame(99, b"abc")); expect_error(s, 5, True)
    # a frame cut mid-payload, then the device hangs up: the server just closes
    s = connect(); s.sendall(frame(1, hello_payload(token))[:20]); s.close()
    # after WELCOME: a malformed VERIFY is refused, not fatal; the connection still works
    s = connect(); s.sendall(frame(1, hello_payload(token))); welcome(s)
    s.sendall(frame(5, b"\x07\x00\x00\x00" + b"\xff" * 5))
    t, p = recv_frame(s)
    assert t == 12 and not (struct.unpack("<H", p[2:4])[0] & 1), (t, p)
    s.sendall(frame(13, struct.pack("<Q", 77)))
    t, p = recv_frame(s)
    assert t == 14 and struct.unpack("<Q", p)[0] == 77, (t, p)
    s.close()
    # three frames in one write: the server holds the last two decrypted while it answers
    s = connect()
    s.sendall(frame(1, hello_payload(token)) + frame(13, struct.pack("<Q", 1)) +
              frame(13, struct.pack("<Q", 2)))
    welcome(s)
    for want in (1, 2):
        t, p = recv_frame(s)
        assert t == 14 and struct.unpack("<Q", p)[0] == want, (t, p)
    s.close()


def fuzz(n):
    rng = random.Random(1234)
    answered = 0
    for i in range(n):
        body = rng.randbytes(rng.randrange(1, 600))
        kind = i % 3
        if kind == 1:  # a valid header announcing random bytes of a random type
            body = frame(rng.randrange(0, 20), body)
        elif kind == 2:  # past HELLO: random frames
            body = frame(1, hello_payload(token)) + frame(rng.randrange(3, 15), body)
        s = connect()
        s.settimeout(0.3)
        try:
            s.sendall(body)
            while s.recv(4096):
                answered += 1
        except (socket.timeout, ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
        s.close()
    s = connect(); s.sendall(frame(1, hello_payload(token))); welcome(s); s.close()
    assert answered > 0, "the server never answered"


def stall(n, limit):
    # the start of a real ClientHello: a TLS record header announcing more than is sent
    hs = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + os.urandom(32)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i > 0:
            s.sendall(hs)
        socks.append(s)
    print("stalling", flush=True)
    t0 = time.time()
    open_ = set(range(n))
    while open_ and time.time() - t0 < limit:
        for i in list(open_):
            socks[i].settimeout(0.05)
            try:
                if socks[i].recv(100) == b"":
                    open_.discard(i)
            except socket.timeout:
                pass
            except ConnectionResetError:
                open_.discard(i)
    assert not open_, f"{len(open_)} stalled handshakes still open after {limit} s"
    print(f"closed after {time.time() - t0:.1f} s")


if case == "badinput":
    badinput()
elif case == "fuzz":
    fuzz(int(arg))
elif case == "stall":
    stall(int(arg), float(sys.argv[6]))
else:
    raise SystemExit(f"unknown case {case}")
print("ok")
