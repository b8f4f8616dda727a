#!/usr/bin/python3
"""Run one python3-libtorrent peer (seeder, downloader or bare DHT node) with
every discovery/port-mapping feature off unless explicitly enabled.

Downloader exits 0 once the file is complete and its SHA-256 matches
--expect-sha256 (after --linger seconds), 1 on timeout.  Seeder / DHT node
run until --stop-file exists or --timeout passes (exit 0).
"""
import argparse
import hashlib
import os
import sys
import time

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("--role", choices=["seed", "leech", "node"], required=True)
ap.add_argument("--listen", required=True, help="listen_interfaces, e.g. 100.64.0.1:42111")
ap.add_argument("--torrent")
ap.add_argument("--save", default=".")
ap.add_argument("--enc", choices=["plain", "forced", "enabled"], default="plain")
ap.add_argument("--no-tcp", action="store_true")
ap.add_argument("--no-utp", action="store_true")
ap.add_argument("--dht", action="store_true")
ap.add_argument("--dht-bootstrap", default="", help="host:port[,host:port]")
ap.add_argument("--lsd", action="store_true")
ap.add_argument("--connect", action="append", default=[], help="ip:port to connect_peer() to")
ap.add_argument("--expect-sha256")
ap.add_argument("--stop-file")
ap.add_argument("--linger", type=float, default=2.0)
ap.add_argument("--timeout", type=float, default=90)
a = ap.parse_args()

pol = {"plain": lt.enc_policy.disabled, "forced": lt.enc_policy.forced, "enabled": lt.enc_policy.enabled}[a.enc]
settings = {
    "listen_interfaces": a.listen,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_lsd": a.lsd,
    "enable_dht": a.dht,
    "dht_bootstrap_nodes": a.dht_bootstrap,
    "enable_ip_notifier": False,
    "in_enc_policy": int(pol),
    "out_enc_policy": int(pol),
    "enable_incoming_tcp": not a.no_tcp,
    "enable_outgoing_tcp": not a.no_tcp,
    "enable_incoming_utp": not a.no_utp,
    "enable_outgoing_utp": not a.no_utp,
    # tiny private test network: let the DHT accept several nodes of one /24 and 100.64/10
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_ignore_dark_internet": False,
    "dht_prefer_verified_node_ids": False,
    "dht_enforce_node_id": False,
    "alert_mask": int(lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                      | lt.alert.category_t.peer_notification | lt.alert.category_t.tracker_notification
                      | lt.alert.category_t.dht_notification | lt.alert.category_t.connect_notification
                      | lt.alert.category_t.ip_block_notification),
}
if a.enc == "forced":
    settings["allowed_enc_level"] = int(lt.enc_level.rc4)
    settings["prefer_rc4"] = True
if a.lsd:
    settings["local_service_announce_interval"] = 5
ses = lt.session(settings)

h = None
if a.torrent:
    ti = lt.torrent_info(a.torrent)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = a.save
    h = ses.add_torrent(atp)
    print("added", ti.name(), ti.info_hashes().v1, flush=True)

t0 = time.time()
done_at = None
next_dht_announce = t0 + 2
connected = set()
while True:
    for al in ses.pop_alerts():
        print(f"{time.time() - t0:7.2f} {al.what()}: {al.message()}", flush=True)
    now = time.time()
    if h is not None and a.connect and not connected:
        for c in a.connect:
            ip, port = c.rsplit(":", 1)
            h.connect_peer((ip.strip("[]"), int(port)))
            connected.add(c)
    if h is not None and a.dht and now >= next_dht_announce and h.status().num_peers == 0:
        h.force_dht_announce()
        next_dht_announce = now + 5
    if a.role == "leech" and h is not None and done_at is None and h.status().is_seeding:
        path = os.path.join(a.save, ti.name())
        dig = hashlib.sha256(open(path, "rb").read()).hexdigest()
        print(f"complete after {now - t0:.1f}s sha256={dig}", flush=True)
        if a.expect_sha256 and dig != a.expect_sha256:
            print("SHA-256 MISMATCH", flush=True)
            sys.exit(2)
        done_at = now
    if done_at is not None and now - done_at >= a.linger:
        break
    if a.stop_file and os.path.exists(a.stop_file):
        break
    if now - t0 > a.timeout:
        if a.role == "leech":
            print("TIMEOUT", flush=True)
            sys.exit(1)
        break
    time.sleep(0.2)
# graceful shutdown: sends tracker 'stopped' event, closes peer connections
del h
del ses
print("exit ok", flush=True)
