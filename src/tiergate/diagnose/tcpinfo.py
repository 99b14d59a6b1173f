"""How many bytes each established TCP socket has received, from the kernel's ``tcp_info`` (what
``ss -ti`` shows as ``bytes_received``), read through the sock_diag netlink socket.

A dump reads it twice, a short interval apart: a test blocked in ``recv`` while the count grows is
reading a slow stream, not waiting on a silent peer. Linux only; anywhere else, or when the
kernel refuses, the answer is empty and the dump says what it said before.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

Ends = tuple[str, str]  # ("127.0.0.1:5000", "127.0.0.1:41234"), as the dump writes them

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
_ESTABLISHED = 1 << 1
_INET_DIAG_INFO = 2
_DIAG_MSG = struct.Struct("=BBBB HH16s16sI8s IIIII")  # inet_diag_msg
_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received (u64) in struct tcp_info


def _request(family: int) -> bytes:
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), 0,
                       _ESTABLISHED) + bytes(48)  # inet_diag_sockid: any
    return struct.pack("=IHHII", 16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1,
                       0) + body


def _address(family: int, raw: bytes, port: int) -> str:
    host = raw[:4] if family == socket.AF_INET else raw
    ip = ipaddress.ip_address(host)
    mapped = getattr(ip, "ipv4_mapped", None)  # written as the IPv4 end it is
    return f"{mapped or ip}:{port}"


def _received(message: bytes, family: int) -> tuple[Ends, int] | None:
    if len(message) < _DIAG_MSG.size:
        return None
    fields = _DIAG_MSG.unpack_from(message)
    sport, dport, src, dst = socket.ntohs(fields[4]), socket.ntohs(fields[5]), fields[6], fields[7]
    ends = (_address(family, src, sport), _address(family, dst, dport))
    offset = _DIAG_MSG.size
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        if kind == _INET_DIAG_INFO and length - 4 >= _BYTES_RECEIVED + 8:
            return ends, struct.unpack_from("=Q", message, offset + 4 + _BYTES_RECEIVED)[0]
        offset += (length + 3) & ~3
    return None


def _dump(family: int) -> dict[Ends, int]:
    out: dict[Ends, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(0.5)
        diag.send(_request(family))
        while True:
            data = diag.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < 16:
                    return out
                found = _received(data[offset + 16:offset + length], family)
                if found:
                    out[found[0]] = found[1]
                offset += (length + 3) & ~3
            if not data:
                return out


def bytes_received() -> dict[Ends, int]:
    """Bytes received so far by each established TCP socket of this network namespace."""
    out: dict[Ends, int] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            out.update(_dump(family))
        except (OSError, AttributeError, struct.error, ValueError):
            continue
    return out
