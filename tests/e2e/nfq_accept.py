#!/usr/bin/python3
"""Minimal NFQUEUE consumer in pure Python (raw nfnetlink, no libraries):
binds one queue and ACCEPTs every packet. Used only by the e2e harness to
check that the iptables NFQUEUE rules of nfqueue mode really queue packets
(MODE=py-nfqueue), before p2pguard's own `nfqueue` command exists.

    nfq_accept.py QUEUE_NUM [--count-file FILE]

Exits 0 on SIGTERM/SIGINT; writes the number of verdicts issued to FILE then.
"""
import os
import signal
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_PF_BIND, NFQNL_CFG_CMD_PF_UNBIND = 1, 3, 4
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
AF_INET = 2

queue = int(sys.argv[1])
count_file = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--count-file" else None
seq = 0
verdicts = 0


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def msg(mtype, flags, family, res_id, attrs):
    global seq
    seq += 1
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs  # nfgenmsg
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | mtype, flags, seq, 0) + body


def stop(*_):
    if count_file:
        with open(count_file, "w") as f:
            f.write(f"{verdicts}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
s.bind((0, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)


def config(cmd_attrs, res_id):
    s.send(msg(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, AF_INET, res_id, cmd_attrs))
    data = s.recv(65536)
    mtype = struct.unpack_from("=H", data, 4)[0]
    if mtype == NLMSG_ERROR:
        err = struct.unpack_from("=i", data, 16)[0]
        if err != 0:
            raise OSError(-err, f"nfqueue config: {os.strerror(-err)}")


# (older kernels want PF_UNBIND/PF_BIND; newer ones ignore them)
for c in (NFQNL_CFG_CMD_PF_UNBIND, NFQNL_CFG_CMD_PF_BIND):
    try:
        config(attr(NFQA_CFG_CMD, struct.pack("=BxH", c, socket.htons(AF_INET))), 0)
    except OSError:
        pass
config(attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, socket.htons(AF_INET))), queue)
config(attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)), queue)
print(f"bound queue {queue}", flush=True)

while True:
    data = s.recv(262144)
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if (mtype >> 8) == NFNL_SUBSYS_QUEUE and (mtype & 0xFF) == NFQNL_MSG_PACKET:
            a = off + 20  # nlmsghdr (16) + nfgenmsg (4)
            end = off + length
            pid = None
            while a + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if (akind & 0x7FFF) == NFQA_PACKET_HDR:
                    pid = struct.unpack_from("!I", data, a + 4)[0]
                a += (alen + 3) & ~3
            if pid is not None:
                s.send(msg(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, queue,
                           attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))))
                verdicts += 1
        off += (length + 3) & ~3
